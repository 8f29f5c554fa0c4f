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
	$(BIN)/pip install -q -e ".[test,metrics,explore]"
	touch $(STAMP)

install: $(STAMP)

# The main job on built-in data: a small conditional StyleGAN2 (one class per slice orientation of the MNI152
# template) at 32 px for 40 kimg (about 7-8 minutes on 2 CPU cores), then a grid generated from the model.
DEMO ?= runs/demo
DEMO_TRAIN ?= --resolution 32 --conditional --kimg 40 --batch 16 --channel-base 1024 --channel-max 64 \
	--z-dim 64 --w-dim 64 --pl-weight 0 --r1-gamma 0.1 --ada-kimg 50 --tick-kimg 2 --sample-ticks 5 \
	--checkpoint-ticks 10

demo: install
	rm -rf $(DEMO)
	$(BIN)/stylemri data inspect builtin:mni152 --resolution 32 --grid $(DEMO)/real_examples.png
	$(BIN)/stylemri train --data builtin:mni152 $(DEMO_TRAIN) --out $(DEMO) --name mni152-32
	$(BIN)/stylemri generate $(DEMO)/00000-mni152-32 --n 8 --batch 8 --outdir $(DEMO)/generated

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
