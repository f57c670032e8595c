# The two commands of the README: `make demo` and `make test`. Both set themselves up.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint unit clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/jupyterhub-sidecars demo

lint: setup
	$(BIN)/ruff check services harness tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# Everything but the slow integration tests, for a quick loop while editing: no root, apt or
# network once the virtualenv exists (tests that need root skip outside CI).
unit:
	@test -x $(BIN)/pytest || { echo "make unit: no $(VENV) yet; run make setup once (it needs the network)"; exit 1; }
	$(BIN)/pytest -m "not slow"

clean:
	rm -rf $(VENV) .venv-z2jh node_modules labextension/node_modules labextension/lib services/metrics/labextension .tools .demo test-artifacts .mypy_cache .ruff_cache .pytest_cache
