#!/bin/sh
# Debian packages the test suite drives: Chromium (the dashboard test) and docker-compose (the
# compose file's validation; no Docker engine is needed for `docker-compose config`).
set -eu
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: please install the Debian packages:$missing" >&2
    exit 1
fi
echo "system-deps: installing$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
