# One image for every trackpipe role (gateway now; processors and triggers later).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY trackpipe ./trackpipe
COPY gateway ./gateway
COPY processors ./processors
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 trackpipe
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER trackpipe
WORKDIR /home/trackpipe
ENV TRACKPIPE_DATA_DIR=/home/trackpipe/data \
    TRACKPIPE_HTTP_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["trackpipe"]
CMD ["gateway"]
