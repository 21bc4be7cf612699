# The two commands of the README: `make demo` and `make test`. Both create .venv and install
# the package with the pinned versions of constraints.txt first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= test,deploy,docs,notebooks,datasets
LINT_PATHS := larq_bnext tests experiments benchmarks

.PHONY: install demo test lint unit notebooks docs docs-serve clean

$(STAMP): setup.py constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.2" setuptools wheel
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m larq_bnext.train

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

unit: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/pytest

test: lint unit

docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	$(VENV)/bin/mkdocs serve

clean:
	rm -rf $(VENV) site build *.egg-info .pytest_cache
