# Two commands for a fresh machine: `make demo` (the main job on built-in data) and `make test`.
# Each creates .venv and installs what it needs. GPU users: install your CUDA torch into .venv first
# (or set TORCH_SPEC), then run the same targets.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.stylemri-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test,metrics,explore,export]"
	touch $(STAMP)

install: $(STAMP)

# The main job on built-in data: a small conditional StyleGAN2 (one class per slice orientation of the MNI152
# template) at 32 px for 36 kimg (about 12 minutes of training on 2 quiet CPU cores at ~50 img/s), then
# a grid generated from the model. Every training value is written out so the recipe means the same when
# defaults change. Real x-flips stay off (the default): mirroring a sagittal slice turns the head around. Measure it with
# `python benchmarks/bench_quality.py --run runs/demo/00000-mni152-32` (README, "Two commands").
DEMO ?= runs/demo
DEMO_TRAIN ?= --preset auto --arch stylegan2 --resolution 32 --conditional --kimg 36 --seed 0 \
	--batch 16 --channel-base 1024 --channel-max 64 --z-dim 64 --w-dim 64 --map-layers 2 --mbstd-group 4 \
	--loss ns --g-lr 0.0025 --d-lr 0.0025 --betas 0,0.99 --r1-gamma 0.1 --r1-interval 16 --pl-weight 0 \
	--style-mixing 0.9 --ema-kimg 5 --ema-rampup 0.05 --aug ada --aug-p 0 --ada-target 0.6 --ada-interval 4 \
	--ada-kimg 50 --precision fp32 --channels-last --workers 0 --tick-kimg 2 --sample-ticks 5 --checkpoint-ticks 10

demo: install
	rm -rf $(DEMO)
	$(BIN)/stylemri data inspect builtin:mni152 --resolution 32 --grid $(DEMO)/real_examples.png
	$(BIN)/stylemri train --data builtin:mni152 $(DEMO_TRAIN) --outdir $(DEMO) --name mni152-32
	$(BIN)/stylemri generate $(DEMO)/00000-mni152-32 --num 8 --batch 8 --outdir $(DEMO)/generated
	@echo "demo grid (one row per class: axial, coronal, sagittal): $$(ls $(DEMO)/generated/kimg-*/grid.png)"

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
