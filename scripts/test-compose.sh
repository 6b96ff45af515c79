#!/bin/sh
# `make test-compose`, run under scripts/with-dockerd.sh (an engine answers at DOCKER_HOST):
# every image built, the compose test (tests/compose/) and a small integration module whose
# broker is the locally built Kafka image, started through testcontainers (the Kafka fixture
# takes that path when an engine answers; `make test`, without one, takes the local launcher's).
# The compose project is removed afterwards whatever happened, even if pytest itself was killed.
set -eu
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
export COMPOSE_PROJECT_NAME=trackpipe-compose-test

started=$(date +%s)
sh scripts/images.sh
echo "test-compose: images ready after $(($(date +%s) - started)) s" >&2

status=0
"$VENV/bin/pytest" -p no:cacheprovider -s --durations=5 tests/compose \
    tests/integration/test_gateway_kafka.py || status=$?

docker-compose --file docker-compose.yml down --volumes --remove-orphans >/dev/null 2>&1 ||
    echo "test-compose: docker-compose down failed; remove project $COMPOSE_PROJECT_NAME by hand" >&2
echo "test-compose: $( [ $status = 0 ] && echo passed || echo FAILED ) in" \
     "$(($(date +%s) - started)) s" >&2
exit $status
