# The two commands a newcomer needs: `make run` and `make test`. Both install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU wheel of torch is pinned here; pyproject.toml states the supported range.
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml sdk/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIN)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ./sdk
	touch $(STAMP)

run: install
	$(BIN)/python -m app.runner

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check app workers migrations tests bench sdk
	$(BIN)/ruff format --check app workers migrations tests bench sdk

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .shardtrain .pytest_cache .mypy_cache .ruff_cache
