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
	$(BIN)/pip install -q -e ".[test,metrics]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/stylemri data inspect builtin:mni152 --resolution 64 --grid runs/demo/real_examples.png

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
