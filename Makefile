# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: demo test smoke install lock notebooks clean-venv

LOCK := requirements.lock
EXTRAS := dev perspective quant notebooks figures

# Installs go through the committed lock (every direct and transitive pin, extras included), so two
# installs a month apart are identical: nothing is resolved (--no-deps), the build tools come from the
# lock too (an sdist such as transformers-stream-generator builds with them, not with today's
# setuptools), and pip check proves the locked set is complete.
$(STAMP): pyproject.toml constraints.txt $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $$(grep -E '^(pip|setuptools|wheel)==' $(LOCK))
	$(PY) -m pip install -q --no-deps --no-build-isolation -c constraints.txt -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

## Re-resolve the lock to the newest versions pyproject.toml allows (then run `make test` and commit both).
lock: $(STAMP)
	$(PY) -m piptools compile -q --upgrade $(addprefix --extra=,$(EXTRAS)) --constraint=constraints.txt \
	  --strip-extras --allow-unsafe --no-emit-find-links --no-emit-index-url --no-emit-trusted-host \
	  --output-file=$(LOCK) pyproject.toml

# Headless Chromium renders report.html in the report test and is kaleido's browser for static
# figures (PNG/PDF/SVG; no Chrome download). The Noto fonts cover every script of the 17 languages
# (Latin, Cyrillic, Arabic, Devanagari, CJK, Hangul, Kana): without them tokens render as tofu.
CHROMIUM_STAMP := $(VENV)/.chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_PACKAGES := chromium fonts-noto-core fonts-noto-cjk
$(CHROMIUM_STAMP): $(STAMP)
	@dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; } \
	  || echo "note: could not install $(DEBIAN_PACKAGES); the report screenshot and static-figure tests will skip or fail with a reason"
	touch $@

install: $(STAMP)

## The main job: the whole pipeline on the embedded default model; writes report.html + summary.json.
demo: $(STAMP) $(CHROMIUM_STAMP)
	$(VENV)/bin/xdetox run --preset demo --run-dir $(RUN_DIR)

## Execute every notebook on the demo run (runs/demo; `make demo` first or it runs the stages) and save it
## with its outputs; each saved output passes the report's RTP-LX text guard or nothing is written.
notebooks: $(STAMP) $(CHROMIUM_STAMP)
	$(PY) -m interp.app.notebooks --preset demo --run-dir $(RUN_DIR)

## The test suite (CI runs exactly this through .ci/run). Exit code 5 (no tests collected) counts as failure.
## pytest-xdist runs one worker per CPU this process may use (its affinity, so a container's limit counts;
## at most 4: each worker holds its own smoke run), a test file per worker at a time, so a file's tests keep
## their order; TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= $(shell python3 -c 'import os; print(min(4, len(os.sched_getaffinity(0))))' 2>/dev/null || echo 2)
test: $(STAMP) $(CHROMIUM_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile tests

smoke: $(STAMP)
	$(VENV)/bin/xdetox run --preset smoke --run-dir runs/smoke

clean-venv:
	rm -rf $(VENV)
