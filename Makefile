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
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,perspective,quant,notebooks]"
	touch $(STAMP)

install: $(STAMP)

## The main job: the whole pipeline on the embedded default model; writes report.html + summary.json.
demo: $(STAMP)
	$(VENV)/bin/xdetox run --preset demo --run-dir $(RUN_DIR)

## The test suite (CI runs exactly this through .ci/run). Exit code 5 (no tests collected) counts as failure.
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

smoke: $(STAMP)
	$(VENV)/bin/xdetox run --preset smoke --run-dir runs/smoke

clean-venv:
	rm -rf $(VENV)
