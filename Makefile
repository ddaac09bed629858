# The two set-up commands: `make test` and `make demo`. Each creates .venv if missing and
# installs what it needs. torch is pinned to the release this CPU machine carries; on a GPU
# machine, install the CUDA build of the same release first (README, "GPU").
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ORT    ?= cpu
STAMP  := $(VENV)/.installed-$(ORT)
DEMO   ?= runs/demo

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,$(ORT),dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

# Train a narrow model (ngf = ndf = 32) on the built-in shapes: about 13 minutes on 2 CPU cores.
demo: install
	$(BIN)/dcgan-train --out $(DEMO) --ngf 32 --ndf 32 --batch-size 64 --steps 2000 \
		--channels-last --overwrite
	@echo "samples: $(DEMO)/samples/last.png  (loss plot: $(DEMO)/loss.png)"

clean:
	rm -rf $(VENV) runs artifacts out
