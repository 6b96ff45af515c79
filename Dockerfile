# One image for every trackpipe role: gateway, worker, triggers, dashboard, topics (the command
# picks the role), installed from wheels in two stages so that the runtime holds the installed
# environment, not the wheels.
#
# `make images` first makes, on the host, the wheel of trackpipe and the wheels of the very
# versions of its dependencies the venv's tests ran with (build/images/wheels/): the build
# reaches no package index, only Debian's mirror. BASE is any Debian bookworm (Python 3.11):
# `make images` passes the one it imports from debootstrap (no image registry needed); where
# Docker Hub is reachable, debian:bookworm-slim will do.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS install
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY build/images/wheels/dependencies /wheels/dependencies
RUN python3 -m venv /opt/trackpipe \
    && /opt/trackpipe/bin/pip install --no-index --no-cache-dir /wheels/dependencies/*.whl
COPY build/images/wheels/trackpipe /wheels/trackpipe
RUN /opt/trackpipe/bin/pip install --no-index --no-deps --no-cache-dir /wheels/trackpipe/*.whl

FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 trackpipe
COPY --from=install /opt/trackpipe /opt/trackpipe
USER trackpipe
WORKDIR /home/trackpipe
# Named volumes mounted below data/ are created owned by this user.
RUN mkdir -p data/spool data/logs data/processors/journal
ENV PATH=/opt/trackpipe/bin:$PATH \
    TRACKPIPE_DATA_DIR=/home/trackpipe/data \
    TRACKPIPE_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8080 6066 8090
ENTRYPOINT ["trackpipe"]
CMD ["gateway"]
