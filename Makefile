# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/demo

.PHONY: demo test smoke install clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,perspective,quant,notebooks,figures]"
	touch $(STAMP)

# Headless Chromium renders report.html in the report test (and kaleido's static export).
CHROMIUM_STAMP := $(VENV)/.chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM_STAMP): $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "note: could not install chromium; the report screenshot test will skip with a reason"
	touch $@

install: $(STAMP)

## The main job: the whole pipeline on the embedded default model; writes report.html + summary.json.
demo: $(STAMP)
	$(VENV)/bin/xdetox run --preset demo --run-dir $(RUN_DIR)

## The test suite (CI runs exactly this through .ci/run). Exit code 5 (no tests collected) counts as failure.
test: $(STAMP) $(CHROMIUM_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

smoke: $(STAMP)
	$(VENV)/bin/xdetox run --preset smoke --run-dir runs/smoke

clean-venv:
	rm -rf $(VENV)
