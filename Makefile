# The two set-up commands: `make test` and `make demo`. Each creates .venv if missing and
# installs what it needs. torch is pinned to the release this CPU machine carries; on a GPU
# machine, install the CUDA build of the same release first (README, "GPU").
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ORT    ?= cpu
STAMP  := $(VENV)/.installed-$(ORT)

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip uninstall -q -y onnxruntime onnxruntime-gpu 2>/dev/null || true
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,$(ORT),dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

# The whole chain on the built-in shapes data: a narrow model (ngf 32, ndf 16) with one-sided
# label smoothing and instance noise (README, "On the shapes data"), then export and generate.
DEMO_STEPS ?= 6000
demo: install
	$(BIN)/dcgan-train --out runs/demo --ngf 32 --ndf 16 --batch-size 64 --steps $(DEMO_STEPS) \
		--label-smoothing 0.1 --instance-noise 0.1 --channels-last --overwrite
	$(BIN)/dcgan-export runs/demo/checkpoints/last.pt --format all --out artifacts/demo --overwrite
	$(BIN)/dcgan-generate artifacts/demo -n 1000 --out out/demo --grid out/demo-grid.png --overwrite
	@echo "samples: runs/demo/samples/last.png; artifact: artifacts/demo/; images: out/demo/ (grid out/demo-grid.png)"

bench: install
	$(BIN)/dcgan-bench artifacts/demo --checkpoint runs/demo/checkpoints/last.pt --out bench

clean:
	rm -rf $(VENV) runs artifacts out
