# The two front-door commands: `make run` and `make test`. Both set up everything themselves.
# `make test-compose` (CI runs it after `make test`) brings the compose deployment up for real.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell $(PYTHON) -c "import hashlib,sys;print(hashlib.sha256(open('pyproject.toml','rb').read()).hexdigest()[:12])")

.PHONY: run test lint system-deps compose-deps images test-compose scale-demo bench-gateway \
	bench-processors bench-enrichment bench-state bench-readside profile-worker kafka-stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

## run: local Kafka (unless TRACKPIPE_KAFKA_BOOTSTRAP is set), topics, demo project, gateway on :8080
run: $(STAMP)
	$(BIN)/trackpipe up

## test: the whole suite against a real Kafka broker that the suite starts and stops itself
test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	docker-compose -f docker-compose.yml config --quiet
	$(BIN)/pytest --durations=20

## system-deps: Debian's chromium and docker-compose, which the suite drives (apt, as root)
system-deps:
	sh scripts/system-deps.sh

## compose-deps: Docker's engine, debootstrap, Java and Maven (apt, as root), for the two below
compose-deps:
	sh scripts/system-deps.sh compose

## images: every image of docker-compose.yml, from Debian's packages, PyPI and Maven Central
images: $(STAMP) compose-deps
	sh scripts/with-dockerd.sh sh scripts/images.sh

## test-compose: the images, the deployment up in containers, traffic through nginx, a broker and
## a worker killed, every request logged once, profiles exact; down -v and dockerd stopped after
test-compose: $(STAMP) compose-deps
	sh scripts/with-dockerd.sh sh scripts/test-compose.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## bench-gateway: wrk against the gateway and a bare ASGI app, same server settings (needs wrk)
bench-gateway: $(STAMP)
	$(BIN)/python bench/gateway.py

## bench-processors: one worker against a bare decoding consumer, same records, one run
bench-processors: $(STAMP)
	$(BIN)/python bench/processors.py

## profile-worker: bench-processors with py-spy on each worker, against BASELINE (git revision)
BASELINE ?= HEAD
profile-worker: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python bench/processors.py --profile --baseline $(BASELINE)

## bench-enrichment: the worker's own handling with and without enrichment (no Kafka)
bench-enrichment: $(STAMP)
	$(BIN)/python bench/enrichment.py

## bench-state: one worker's memory with a million distinct visitors, and its restart time
bench-state: $(STAMP)
	$(BIN)/python bench/state.py

## bench-readside: a timeline lookup and a group-by over a million logged actions (no Kafka)
bench-readside: $(STAMP)
	$(BIN)/python bench/readside.py

## scale-demo: 3 brokers, 2 gateways, 3 workers, 50,000 requests, a broker and a worker killed
scale-demo: $(STAMP)
	TRACKPIPE_SCALE_REQUESTS=50000 $(BIN)/pytest -s -p no:cacheprovider \
		tests/integration/test_scale.py::test_three_brokers_two_gateways_three_workers_with_failures

kafka-stop: $(STAMP)
	$(BIN)/trackpipe kafka stop

clean:
	rm -rf $(VENV) data build *.egg-info
