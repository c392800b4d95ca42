# Two commands do all the set-up on a fresh machine:  `make run`  and  `make test`.
# Each creates the virtual environment (.venv) when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Offline first: never let a library wait on the model hub.
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

RUN_ARGS ?= --method oversample

.PHONY: venv run smoke test lint clean
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

run: venv
	$(BIN)/python -m benchmark run $(RUN_ARGS)

smoke: venv
	$(BIN)/python -m benchmark run --method oversample --profile smoke

test: venv
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
