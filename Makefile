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

# Debian packages some tests read archives with (the AWS SDK for Ruby); installed when we can
# (root with apt), else the test that needs it says it skipped and why.
SYSDEPS := $(VENV)/.system-deps
$(SYSDEPS): $(STAMP)
	@ruby -e 'require "aws-sdk-s3"' 2>/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get install -y -q ruby-aws-sdk-s3 >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q ruby-aws-sdk-s3 >/dev/null 2>&1; }; }; } || \
		echo "note: ruby-aws-sdk-s3 is not installed; its interop test will skip"
	touch $@

demo: $(STAMP)
	$(BIN)/python -m chalicelib.devkit.demo

# Two workers (one a core on the 2-core CI machine; TEST_WORKERS=0 runs in this process); a
# test file's tests stay on one worker, so its module fixtures are built once.
TEST_WORKERS ?= 2
test: $(STAMP) $(SYSDEPS)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

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
	$(BIN)/python -m chalicelib.cli setup deployment-files --check --stage $(STAGE)
	rm -rf build/$(STAGE)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(BIN)/python -m chalicelib.setup.package \
		--stage $(STAGE) --merge-template .chalice/merge-template-$(STAGE).json \
		$(if $(WHEELHOUSE),--wheelhouse $(WHEELHOUSE)) build/$(STAGE)
	$(BIN)/cfn-lint build/$(STAGE)/sam.json
