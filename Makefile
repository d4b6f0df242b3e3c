# The two commands of the README. Each builds .venv when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: repro test lint bench clean-venv

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

## make repro: dvc repro on the default (embedded, synthetic) profile
repro: $(STAMP)
	$(BIN)/dvc repro

## make test: the whole test suite (unit, stage, multi-process and an end-to-end tiny dvc repro)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

## make bench: speed figures (needs the outputs of make repro)
bench: $(STAMP)
	$(BIN)/python benchmarks/sam_prompting.py
	$(BIN)/python benchmarks/sam_prompt_ceiling.py
	$(BIN)/python benchmarks/sam_step.py
	$(BIN)/python benchmarks/wsod_epoch_time.py --method mist
	$(BIN)/python benchmarks/wsod_epoch_time.py --method oicr

clean-venv:
	rm -rf $(VENV)
