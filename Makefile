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

test: env
	$(PY) -m pytest -q tests

# The quick loop while editing: everything but the tests marked slow (see setup.cfg).
test-fast: env
	$(PY) -m pytest -q -m "not slow" tests
