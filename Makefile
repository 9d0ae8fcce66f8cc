# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv when it is
# missing (torch, detectron2 v0.6, sta_d2; see dev/bootstrap.sh) and reuse it when present.
PY := .venv/bin/python
DEMO_DIR ?= output/demo

.PHONY: env demo demo-dense test test-fast

env:
	@bash dev/bootstrap.sh

demo: env
	@bash dev/demo.sh "$(DEMO_DIR)"

demo-dense: env
	@bash dev/demo_dense.sh "$(DEMO_DIR)_dense"

# Two worker processes (pytest-xdist), each taking whole test files, so that a file's module
# fixtures (generated data, the docs' demo runs) are made once; conftest.py keeps each process,
# and the training runs the tests start, to one thread.
test: env
	$(PY) -m pytest -q -n 2 --dist loadfile tests

# The quick loop while editing: everything but the tests marked slow (see setup.cfg).
test-fast: env
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" tests
