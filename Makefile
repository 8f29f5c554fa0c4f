# Two commands for a fresh machine: `make demo` (the main job on built-in data) and `make test`.
# Each creates .venv and installs what it needs. GPU users: install your CUDA torch into .venv first
# (or set TORCH_SPEC), then run the same targets.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.stylemri-installed

.PHONY: install demo demo-long test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test,metrics,explore,export]"
	touch $(STAMP)

install: $(STAMP)

# The main job on built-in data: a small conditional StyleGAN2 (one class per slice orientation of the MNI152
# template) at 32 px, trained with R3GAN's relativistic loss + R1 + R2 at gamma 0.4 (`--loss r3gan`) and G's image
# clamped to the data range (`--clamp-output`: exact black background), the winner of the recipe search in
# docs/training.md, for DEMO_KIMG kimg (about 12 minutes on 2 quiet CPU cores), then a grid generated from the
# model. Every training value is written out so the recipe means the same when defaults change. Real x-flips
# stay off (the default): mirroring a sagittal slice turns the head around.
# Measure it with `python benchmarks/bench_quality.py --run runs/demo/00000-mni152-32` (README).
# `make demo-long` trains the same recipe for DEMO_LONG_KIMG kimg (about 45 minutes); every checkpoint is kept
# (one per 20 kimg) so that `bench_quality.py --run RUN --all-checkpoints` draws its curve.
DEMO ?= runs/demo
DEMO_KIMG ?= 64
DEMO_LONG_KIMG ?= 160
DEMO_NET ?= --preset auto --arch stylegan2 --resolution 32 --conditional --seed 0 --batch 16 \
	--channel-base 1024 --channel-max 64 --z-dim 64 --w-dim 64 --map-layers 2 --mbstd-group 4
DEMO_REST ?= --g-lr 0.0025 --d-lr 0.0025 --betas 0,0.99 --r1-interval 16 --pl-weight 0 \
	--style-mixing 0.9 --ema-kimg 5 --ema-rampup 0.05 --aug ada --aug-p 0 --ada-target 0.6 --ada-interval 4 \
	--ada-kimg 50 --precision fp32 --channels-last --workers 0 --tick-kimg 2 --sample-ticks 5 --checkpoint-ticks 10 --keep-checkpoints 12
DEMO_TRAIN ?= $(DEMO_NET) --loss r3gan --r1-gamma 0.4 --clamp-output $(DEMO_REST) --kimg $(DEMO_KIMG)
# The same recipe with the non-saturating loss and a linear output (the demo before the search): what
# benchmarks/bench_vs_nvlabs.py trains on both sides, NVlabs having neither r3gan nor the output clamp.
NS_TRAIN ?= $(DEMO_NET) --loss ns --r1-gamma 0.1 $(DEMO_REST)

demo: install
	rm -rf $(DEMO)
	$(BIN)/stylemri data inspect builtin:mni152 --resolution 32 --grid $(DEMO)/real_examples.png
	$(BIN)/stylemri train --data builtin:mni152 $(DEMO_TRAIN) --outdir $(DEMO) --name mni152-32
	$(BIN)/stylemri generate $(DEMO)/00000-mni152-32 --num 8 --batch 8 --outdir $(DEMO)/generated
	@echo "demo grid (one row per class: axial, coronal, sagittal): $$(ls $(DEMO)/generated/kimg-*/grid.png)"

demo-long:
	$(MAKE) demo DEMO=runs/demo-long DEMO_KIMG=$(DEMO_LONG_KIMG)

test: install
	$(BIN)/python -m pytest -q

# The expanded value of a Makefile variable, for the benchmarks that follow the recipes: make -s print-DEMO_TRAIN
print-%:
	@echo $($*)

clean:
	rm -rf $(VENV) runs build *.egg-info
