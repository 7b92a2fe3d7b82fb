# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean deployment-files package

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV) || { $(PYTHON) -m pip install --user --quiet virtualenv && $(PYTHON) -m virtualenv $(VENV); }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m chalicelib.devkit.demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache

# Deployment (docs/OPERATIONS.md). `make package STAGE=prod` builds build/prod/sam.json and
# its deployment.zip with bytecode for the runtime (chalicelib/setup/package.py); it downloads
# requirements.txt for Lambda from PyPI unless WHEELHOUSE=<dir> points pip at local wheels.
STAGE ?= dev

deployment-files: $(STAMP)
	$(BIN)/python -m chalicelib.cli setup deployment-files

package: $(STAMP)
	$(BIN)/python -m chalicelib.cli setup deployment-files --check
	rm -rf build/$(STAGE)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/python -m chalicelib.setup.package \
		--stage $(STAGE) --merge-template .chalice/merge-template-$(STAGE).json \
		$(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE)) build/$(STAGE)
	$(BIN)/cfn-lint build/$(STAGE)/sam.json
