# The two commands of the README: `make demo` and `make test`. Both create .venv and install
# the package with the pinned versions of constraints.txt first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= test,deploy,docs,notebooks,datasets
LINT_PATHS := larq_bnext tests experiments benchmarks notebooks

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

# The tutorials, executed top to bottom (offline; a few minutes on a laptop CPU).
notebooks: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/pytest --nbmake --nbmake-timeout=600 -p no:cacheprovider notebooks

test: lint unit notebooks docs

# The documentation site (site/): a broken link or a missing docstring fails the build.
docs: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

clean:
	rm -rf $(VENV) site build *.egg-info .pytest_cache
