# The two commands of the README. Each builds .venv when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Stage commands in dvc.yaml call `python`: make it the venv's.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: repro test test-long seeds dryrun dryrun-all dryrun-full cost-model lint bench clean-venv

# The venv is installed with uv (twice as fast as pip here: 75 s against 158 s for the same
# requirements.lock, byte-compiled, as PYTHONDONTWRITEBYTECODE may be set); uv does not read pip's
# configuration, so it is handed the extra indexes and wheel folders pip is configured with; the
# lock's exact pins make either resolver install the same files. Without uv (say, an offline
# mirror that lacks it), pip installs the same lock.
UV_VERSION := 0.13.10
PIP_SOURCES = --index-strategy unsafe-best-match \
	$(foreach u,$(sort $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null) $(PIP_EXTRA_INDEX_URL)),--extra-index-url $(u)) \
	$(foreach d,$(sort $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null) $(PIP_FIND_LINKS)),--find-links $(d))
UV_PIP = $(BIN)/uv pip install -q --python $(BIN)/python $(PIP_SOURCES)
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if $(BIN)/pip install -q uv==$(UV_VERSION); then \
		$(UV_PIP) --compile-bytecode -r requirements.lock && $(UV_PIP) --no-deps -e .; \
	else \
		echo "make: uv $(UV_VERSION) not installable, pip installs the lock" >&2; \
		$(BIN)/pip install -q -r requirements.lock && $(BIN)/pip install -q --no-deps -e .; \
	fi
	@touch $(STAMP)

## make repro: dvc repro on the default (embedded, synthetic) profile
repro: $(STAMP)
	$(BIN)/dvc repro

## make test: ruff and the test suite except the whole-DAG dvc repro tests (unit, stage and
## multi-process tests): the developer's loop
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not long"

## make test-long: the long checks, CI runs it after make test: the whole-DAG tests (a tiny dvc
## repro shared by the experiment, remote and contract tests; one instance of every stage on a
## COCO layout) on one core, CI's dry run of the paper profiles (as make dryrun) on the other
test-long: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m long

## make seeds: the training-seed sweep, not part of make repro (docs/seeds.md): one DVC
## experiment per value of SEEDS for params train_seed (WSOD, retraining, WSIS; data, clues,
## prompts and SAM fixed), queued and run one at a time, then reports/seeds.md: mean ± sd of
## every compared row and which of the report's verdicts survive. Needs a committed make repro.
## Each finished seed is saved as reports/seeds/runs/seed-<s>.json (commit it: experiments stay
## in the workspace that ran them); a seed run here or saved for the same code (the stages'
## code deps, params and commands in HEAD's dvc.lock) is skipped and aggregated, so
## a rerun, a later session or another clone adds seeds. 52 to 54 min a seed here (idle); two side by side
## (weaksam seeds --seeds 1 2 --jobs 2) 99 min with other work on the machine.
SEEDS ?= 1 2
seeds: $(STAMP)
	$(BIN)/weaksam seeds --seeds $(SEEDS)

PAPER_PROFILES := paper_voc07 paper_voc12 paper_voc12_wsis paper_coco paper_coco17
# One instance of every stage of paper_voc07 but the report (which needs them all): each code
# path of the paper profile once; the sweeps' other rows differ in params only
# (tests/dryrun/test_ci_stages.py keeps this list complete)
DRYRUN_CI_STAGES := data proposals_ss recall_ss clues_train clues prompts sam_pretrain \
	proposals recall_prompts@weaksam backbone_pretrain wsod@oicr-ss wsod@mist-weaksam \
	wsod_table4@mist-dense pgt@mist_weaksam-top1 pgt@mist_weaksam-adaptive pgt_figure \
	retrain_features retrain_prelim@frcnn-mist_weaksam_adaptive \
	retrain_prelim@detr-mist_weaksam_adaptive retrain@frcnn_mist_weaksam_adaptive_drop \
	retrain@detr_mist_weaksam_adaptive_things90 retrain_figures oracle_pgt \
	retrain_oracle@frcnn_missed figures pseudo_masks wsis@mask_rcnn wsis@mask2former wsis_gt \
	wsis_figure
## make dryrun: CI's dry run of the paper profiles (real architectures, SAM ViT-B, a few small
## images, one small scale per list, a few iterations; CPU): one instance of every stage of
## paper_voc07 (DRYRUN_CI_STAGES, with what they depend on), and the data stage of every other
## profile on its own layout (every stage of every profile: make dryrun-all)
dryrun: $(STAMP)
	$(BIN)/weaksam dryrun paper_voc07 --resolution reduced --sam-model vit_b --out dryrun/reduced \
		--stages $(DRYRUN_CI_STAGES)
	$(BIN)/weaksam dryrun paper_voc12 paper_voc12_wsis paper_coco paper_coco17 --stages data \
		--resolution reduced --out dryrun/reduced

## make dryrun-all: every paper profile's whole DAG, reduced (about 25 min a profile here)
dryrun-all: $(STAMP)
	$(BIN)/weaksam dryrun $(PAPER_PROFILES) --resolution reduced --sam-model vit_b \
		--out dryrun/reduced

## make dryrun-full: the full-resolution dry run (real image sizes, the profile's scales) of
## DRYRUN_PROFILES, then the cost model of the paper run (docs/cost_model.md) from its figures.
## DRYRUN_FULL_STAGES: one instance of every stage kind (CI's list; the other instances differ
## in params only); DRYRUN_FULL_STAGES= runs the whole DAG (several hours a profile here)
DRYRUN_PROFILES ?= paper_voc07 paper_coco17
DRYRUN_SAM ?= vit_b
DRYRUN_FULL_STAGES ?= $(DRYRUN_CI_STAGES)
dryrun-full: $(STAMP)
	$(BIN)/weaksam dryrun $(DRYRUN_PROFILES) --resolution full --sam-model $(DRYRUN_SAM) \
		--out dryrun/full $(if $(strip $(DRYRUN_FULL_STAGES)),--stages $(DRYRUN_FULL_STAGES))
	$(MAKE) cost-model

## make cost-model: docs/cost_model.md from the dry-run figures in COST_DRYRUN, each profile's
## from the first folder that has it (a full-resolution run before a reduced one; each table
## says which it shows)
COST_DRYRUN ?= dryrun/full dryrun/reduced
cost-model: $(STAMP)
	$(BIN)/python -m weaksam.dryrun.cost --profiles $(PAPER_PROFILES) --dryrun-dir $(COST_DRYRUN) \
		--out docs/cost_model.md

lint: $(STAMP)
	$(BIN)/ruff check .

## make bench: speed figures (needs the outputs of make repro)
bench: $(STAMP)
	$(BIN)/python benchmarks/sam_prompting.py
	$(BIN)/python benchmarks/sam_prompt_ceiling.py
	$(BIN)/python benchmarks/sam_step.py
	$(BIN)/python benchmarks/wsod_epoch_time.py --method mist
	$(BIN)/python benchmarks/wsod_epoch_time.py --method oicr
	$(BIN)/python benchmarks/synthetic_data.py
	$(BIN)/python benchmarks/peak_suppression.py

clean-venv:
	rm -rf $(VENV)
