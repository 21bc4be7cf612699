# The two commands of the README: `make demo` and `make test`. Both create .venv and install
# the package with the pinned versions of constraints.txt first; `make test` also builds
# .venv-compat (constraints-compat.txt) for the second tested stack.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= test,deploy,docs,notebooks,datasets
LINT_PATHS := larq_bnext tests experiments benchmarks notebooks
# Worker processes for pytest (pytest-xdist): 2 suits a 2-core machine, where most of a test's
# time is single-threaded Python (building models, tracing); `make test JOBS=auto` for more.
JOBS ?= 2
# --doctest-modules: the examples in the package's docstrings run as tests too (larq_bnext is
# among the paths of `suite` and `unit`).
PYTEST := TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/pytest -n $(JOBS) --dist worksteal --doctest-modules

# The second tested stack (docs/install.md): Python 3.12, the newest supported TensorFlow with
# Keras 2 from tf_keras, no TensorFlow Addons, pinned in constraints-compat.txt. It runs the tests
# marked `compat` (models, weights, a digits training run with resume, export with LCE, predict)
# in these files; none needs torch, which has no CPU wheel for Python 3.12 on this machine.
COMPAT_PYTHON ?= $(firstword $(wildcard /root/.pyenv/versions/3.12.*/bin/python3.12) python3.12)
COMPAT_VENV ?= .venv-compat
COMPAT_STAMP := $(COMPAT_VENV)/.installed-stamp
COMPAT_TESTS := tests/test_keras2.py tests/models/test_bnext.py tests/models/test_serialization.py \
	tests/models/test_construction.py \
	tests/test_predict.py tests/training/test_randaugment.py tests/training/test_resume_cli.py \
	tests/deploy/test_deploy.py

.PHONY: install demo test lint suite unit notebooks docs docs-serve clean compat test-compat

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

# The unit tests, the docstring examples and the tutorials (executed top to bottom, offline) in
# one pytest run, so that the workers share the long items between them.
suite: $(STAMP)
	$(PYTEST) --nbmake --nbmake-timeout=600 -p no:cacheprovider tests larq_bnext notebooks

unit: $(STAMP)
	$(PYTEST) tests larq_bnext

notebooks: $(STAMP)
	$(PYTEST) --nbmake --nbmake-timeout=600 -p no:cacheprovider notebooks

test: lint suite docs compat

$(COMPAT_STAMP): setup.py constraints-compat.txt
	$(COMPAT_PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade "pip>=23.2" setuptools wheel
	$(COMPAT_VENV)/bin/python -m pip install --quiet -c constraints-compat.txt -e ".[deploy]" \
		pytest pytest-timeout pytest-xdist
	touch $(COMPAT_STAMP)

# The framework-boundary tests on the second stack (also part of `make test`).
compat: $(COMPAT_STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 $(COMPAT_VENV)/bin/pytest -n $(JOBS) --dist worksteal -p no:cacheprovider \
		-m compat $(COMPAT_TESTS)

test-compat: compat

# The documentation site (site/): a broken link or a missing docstring fails the build.
docs: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=2 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

clean:
	rm -rf $(VENV) $(COMPAT_VENV) site build *.egg-info .pytest_cache
