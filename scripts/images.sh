#!/bin/sh
# Every image of the compose deployment, from what this machine can reach: Debian's mirror, PyPI
# and Maven Central, no image registry (`make images` runs this under scripts/with-dockerd.sh).
#
#   trackpipe:local             the Python services (Dockerfile)
#   trackpipe/kafka:<version>   Apache Kafka on Debian's OpenJDK (deploy/kafka/Dockerfile)
#   trackpipe/nginx:local       nginx and its Prometheus exporter (deploy/nginx/Dockerfile)
#   trackpipe/prometheus:local  Prometheus (deploy/prometheus/Dockerfile)
#
# All on BASE: by default trackpipe/debian:bookworm, made from Debian's packages by
# scripts/base-image.sh; any other Debian bookworm image is used as it is (BASE=
# debian:bookworm-slim where Docker Hub is reachable). What the images install from PyPI and
# Maven Central is fetched here, on the host, with the host's pip and Maven (and their
# configuration: mirrors, certificates), into build/images/; the builds only copy it.
set -eu
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
LOCAL_BASE=trackpipe/debian:bookworm
BASE=${BASE:-$LOCAL_BASE}
STAGE=build/images
KAFKA_VERSION=$("$VENV/bin/python" -c 'from trackpipe.kafka.launcher import KAFKA_VERSION as v; print(v)')

if [ "$BASE" = "$LOCAL_BASE" ]; then
    sh scripts/base-image.sh "$BASE"
fi
mkdir -p "$STAGE"

# The wheels of trackpipe and of the dependency versions the venv holds (and the tests ran
# with). A fixed SOURCE_DATE_EPOCH makes the same code the same wheel, byte for byte, so the
# image's layers are rebuilt only when the code changed.
echo "images: wheels (pip, the venv's versions)" >&2
rm -rf "$STAGE/wheels"
mkdir -p "$STAGE/wheels/dependencies" "$STAGE/wheels/trackpipe"
"$VENV/bin/pip" freeze --exclude-editable >"$STAGE/constraints.txt"
SOURCE_DATE_EPOCH=315532800 "$VENV/bin/pip" wheel --quiet \
    --wheel-dir "$STAGE/wheels/dependencies" --constraint "$STAGE/constraints.txt" .
mv "$STAGE"/wheels/dependencies/trackpipe-*.whl "$STAGE/wheels/trackpipe/"

# The broker's jars, as the local launcher resolves and caches them, and the JMX exporter.
echo "images: Kafka $KAFKA_VERSION jars (Maven, as the local launcher resolves them)" >&2
JARS=$("$VENV/bin/python" -c 'from trackpipe.kafka.launcher import jar_dir; print(jar_dir())')
rm -rf "$STAGE/kafka"
mkdir -p "$STAGE/kafka"
cp -r "$JARS" "$STAGE/kafka/libs"
rm -f "$STAGE/kafka/libs/.complete"
if ! mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
        "-DoutputDirectory=$PWD/$STAGE/kafka/agent" >"$STAGE/maven.log" 2>&1; then
    tail -n 30 "$STAGE/maven.log" >&2
    echo "images: maven could not resolve deploy/kafka/pom.xml" >&2
    exit 1
fi
# The broker runs as its own user: its jars must be readable whatever mode the host's Maven
# cache gave them (trackpipe's commands create files 0640, so a cache first filled by the
# launcher under one of them is unreadable to the image's user).
chmod -R a+rX "$STAGE/kafka"

build() {
    tag=$1
    dockerfile=$2
    log="$STAGE/$(echo "$tag" | tr '/:' '--').log"
    started=$(date +%s)
    # the classic builder: Debian's dockerd has no buildx beside it, and needs none here
    if ! DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$BASE" --tag "$tag" \
            --file "$dockerfile" . >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "images: building $tag failed (whole log: $log)" >&2
        exit 1
    fi
    echo "images: $tag built in $(($(date +%s) - started)) s" >&2
}

build trackpipe:local Dockerfile
build "trackpipe/kafka:$KAFKA_VERSION" deploy/kafka/Dockerfile
build trackpipe/nginx:local deploy/nginx/Dockerfile
build trackpipe/prometheus:local deploy/prometheus/Dockerfile
