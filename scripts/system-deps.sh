#!/bin/sh
# Debian packages the project's commands drive, installed with apt (as root) when missing.
#
#   sh scripts/system-deps.sh           what `make test` needs: Chromium (the dashboard test)
#                                       and docker-compose (the compose file's validation; no
#                                       engine is needed for `docker-compose config`)
#   sh scripts/system-deps.sh compose   what `make images` and `make test-compose` need besides:
#                                       Docker's engine (dockerd, started and stopped by
#                                       scripts/with-dockerd.sh), debootstrap (the base image),
#                                       Java and Maven (the Kafka jars)
set -eu

# command:package, one pair a word
case "${1:-test}" in
    test) wanted="chromium:chromium docker-compose:docker-compose" ;;
    compose) wanted="docker-compose:docker-compose dockerd:docker.io debootstrap:debootstrap
                     java:openjdk-17-jre-headless mvn:maven" ;;
    *) echo "usage: $0 [test|compose]" >&2; exit 2 ;;
esac

missing=""
for pair in $wanted; do
    # root's PATH may lack /usr/sbin (dockerd, debootstrap) when run through sudo or make
    PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 ||
        missing="$missing ${pair#*:}"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: please install the Debian packages:$missing" >&2
    exit 1
fi
echo "system-deps: installing$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
