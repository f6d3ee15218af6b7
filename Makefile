# Two commands set up and use detdistill on a fresh clone: `make demo` and `make test` (`make lint`: ruff alone).
# Both create or reuse .venv and reinstall only when the dependency spec changed (stamp keyed on its hash).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SPEC_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(SPEC_HASH)
PYTEST_ARGS ?=

.PHONY: install demo test lint weights clean-venv

install: $(STAMP)

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e ".[dev,onnx,deploy]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

demo: install
	$(VENV)/bin/detdistill demo

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

weights: install
	$(VENV)/bin/detdistill weights fetch

clean-venv:
	rm -rf $(VENV)
