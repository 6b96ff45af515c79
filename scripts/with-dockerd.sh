#!/bin/sh
# Runs a command with a Docker engine, and leaves the machine as it found it.
#
#   sh scripts/with-dockerd.sh COMMAND [ARG...]
#
# The engine is the one DOCKER_HOST names (default /var/run/docker.sock) when it answers: it is
# used and left running. Otherwise Debian's dockerd is started here, as root, on a socket of its
# own (/run/trackpipe-dockerd/docker.sock, passed to COMMAND as DOCKER_HOST) and stopped by its
# pid when COMMAND ends, whatever happened. Its own socket, not the default one: on a machine
# shared with others, their test runs must not find an engine that exists only for ours (the
# integration tests' Kafka fixture switches to testcontainers when one answers). Images and
# volumes live in dockerd's default data root, so images built once are there for the next run.
set -eu

[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }

engine_answers() {
    docker ${1:+--host "$1"} version --format '{{.Server.Version}}' >/dev/null 2>&1
}

if engine_answers "${DOCKER_HOST:-}"; then
    exec "$@"
fi

RUN_DIR=/run/trackpipe-dockerd
SOCKET="unix://$RUN_DIR/docker.sock"
if [ "$(id -u)" != 0 ]; then
    echo "with-dockerd: no Docker engine answers and starting one needs root" \
         "(or point DOCKER_HOST at a running engine)" >&2
    exit 1
fi
command -v dockerd >/dev/null 2>&1 || {
    echo "with-dockerd: dockerd is not installed: run \`sh scripts/system-deps.sh compose\`" >&2
    exit 1
}
mkdir -p "$RUN_DIR"
if [ -f "$RUN_DIR/dockerd.pid" ] && kill -0 "$(cat "$RUN_DIR/dockerd.pid")" 2>/dev/null; then
    echo "with-dockerd: a dockerd of an earlier run is still running" \
         "(pid $(cat "$RUN_DIR/dockerd.pid"), socket $SOCKET); stop it first" >&2
    exit 1
fi

echo "with-dockerd: starting dockerd on $SOCKET (log: $RUN_DIR/dockerd.log)" >&2
dockerd --host "$SOCKET" --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/dockerd.pid" \
    >"$RUN_DIR/dockerd.log" 2>&1 &
PID=$!

stop_dockerd() {
    if kill -0 "$PID" 2>/dev/null; then
        echo "with-dockerd: stopping dockerd (pid $PID)" >&2
        kill -TERM "$PID"
        # dockerd stops its containers (10 s each at most) and its containerd first
        waited=0
        while kill -0 "$PID" 2>/dev/null && [ $waited -lt 600 ]; do
            sleep 0.1; waited=$((waited + 1))
        done
        kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
    fi
    wait "$PID" 2>/dev/null || true
}
trap stop_dockerd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

waited=0
until engine_answers "$SOCKET"; do
    if ! kill -0 "$PID" 2>/dev/null || [ $waited -ge 600 ]; then
        echo "with-dockerd: dockerd did not answer within 60 s; its log ends:" >&2
        tail -n 30 "$RUN_DIR/dockerd.log" >&2
        exit 1
    fi
    sleep 0.1; waited=$((waited + 1))
done

status=0
DOCKER_HOST="$SOCKET" "$@" || status=$?
exit $status
