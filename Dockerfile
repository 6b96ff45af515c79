# One image for every trackpipe role: gateway, worker, triggers, dashboard, topics (the command
# picks the role). Built in two stages so that the runtime holds wheels, not a build toolchain.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY runtime ./runtime
COPY logstore ./logstore
COPY trackpipe ./trackpipe
COPY gateway ./gateway
COPY processors ./processors
COPY triggers ./triggers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 trackpipe
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER trackpipe
WORKDIR /home/trackpipe
# Named volumes mounted below data/ are created owned by this user.
RUN mkdir -p data/spool data/logs
ENV TRACKPIPE_DATA_DIR=/home/trackpipe/data \
    TRACKPIPE_HTTP_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
EXPOSE 8080 6066 8090
ENTRYPOINT ["trackpipe"]
CMD ["gateway"]
