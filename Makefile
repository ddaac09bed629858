# The two set-up commands: `make test` and `make demo`. Each creates .venv if missing and
# installs what it needs. torch is pinned to the release this CPU machine carries.
#
# GPU machines: `make test GPU=cu13` (or cu12) installs the GPU stack of that CUDA major
# (onnxruntime-gpu with its CUDA libraries, TensorRT, cuda-python; README, "GPU") and runs every
# gpu/trt test, failing rather than skipping where the GPU cannot be used. The choice is
# remembered in .venv/.stack; `make install GPU=cpu` goes back to the CPU build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
GPU    ?= $(shell cat $(VENV)/.stack 2>/dev/null || echo cpu)
EXTRA  := $(if $(filter cpu,$(GPU)),cpu,gpu-$(GPU))
STAMP  := $(VENV)/.installed-$(GPU)
REQUIRE_GPU := $(if $(filter cpu,$(GPU)),,DCGAN_REQUIRE_GPU=1)

.PHONY: install test lint demo bench gpu-check clean ort-web browser

$(STAMP): pyproject.toml
	@case "$(GPU)" in cpu|cu12|cu13) ;; *) echo "error: GPU must be cpu, cu12 or cu13, got '$(GPU)'" >&2; exit 2;; esac
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip uninstall -q -y onnxruntime onnxruntime-gpu 2>/dev/null || true
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,$(EXTRA),dev]'
	rm -f $(VENV)/.installed-*
	echo $(GPU) > $(VENV)/.stack
	touch $@

install: $(STAMP)

test: install
	$(REQUIRE_GPU) $(BIN)/python -m pytest -q

# onnxruntime-web for the browser page (dcgan-export --format web): the release pinned in
# export/web.py, from the npm registry, once, into the environment; exports copy its files.
ORT_WEB_VERSION := $(shell sed -n 's/^ORT_WEB_VERSION = "\(.*\)".*/\1/p' export/web.py)
ORT_WEB_DIR     := $(VENV)/share/dcgan/onnxruntime-web-$(ORT_WEB_VERSION)
ORT_WEB_FILES   := ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm

ort-web: $(ORT_WEB_DIR)/package.json

$(ORT_WEB_DIR)/package.json:
	@command -v npm >/dev/null || { echo "error: npm not found — install Node.js 18 or newer" >&2; exit 1; }
	rm -rf $(ORT_WEB_DIR) $(ORT_WEB_DIR).pack $(ORT_WEB_DIR).tmp && mkdir -p $(ORT_WEB_DIR).pack
	cd $(ORT_WEB_DIR).pack && npm pack --silent onnxruntime-web@$(ORT_WEB_VERSION) >/dev/null \
		&& tar xzf onnxruntime-web-$(ORT_WEB_VERSION).tgz
	mkdir -p $(ORT_WEB_DIR).tmp && cp $(addprefix $(ORT_WEB_DIR).pack/package/dist/,$(ORT_WEB_FILES)) \
		$(ORT_WEB_DIR).pack/package/package.json $(ORT_WEB_DIR).tmp/
	mv $(ORT_WEB_DIR).tmp $(ORT_WEB_DIR) && rm -rf $(ORT_WEB_DIR).pack

# A Chromium for the browser tests (tests/test_web_browser.py), from the system's packages where
# none is installed; the tests skip, saying why, on a machine without one.
CHROMIUM := $(firstword $(foreach b,chromium chromium-headless-shell chromium-browser,$(shell command -v $(b))))
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@$(if $(CHROMIUM),echo "chromium: $(CHROMIUM)",$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

lint: install
	$(BIN)/ruff check .

# The whole chain on the built-in shapes data: the demo model (ngf 32, ndf 16) with the shapes
# recipe (train/recipe.py, differentiable translation included), then export and generate; then the same for the reference model that ships in reference/ (trained
# long; reference/README.md says how). DEMO_STEPS=N for a longer or shorter demo run.
DEMO_STEPS ?= 2400
DEMO_SEED  ?= 0
demo: install ort-web
	$(BIN)/dcgan-train --out runs/demo --ngf 32 --ndf 16 --steps $(DEMO_STEPS) --seed $(DEMO_SEED) \
		--workers 1 --overwrite
	$(BIN)/dcgan-export runs/demo/checkpoints/last.pt --format all --out artifacts/demo --overwrite
	$(BIN)/dcgan-generate artifacts/demo -n 1000 --out out/demo --grid out/demo-grid.png --overwrite
	$(BIN)/dcgan-analyze quality artifacts/demo --out out/demo-quality
	$(BIN)/dcgan-export reference/checkpoint.pt --format onnx --out artifacts/reference --overwrite
	$(BIN)/dcgan-generate artifacts/reference -n 64 --out out/reference --grid out/reference-grid.png --overwrite
	$(BIN)/dcgan-analyze quality artifacts/reference --out out/reference-quality
	@echo "demo: out/demo-grid.png, out/demo-quality/, artifacts/demo/, out/demo/"
	@echo "reference: out/reference-grid.png, out/reference-quality/, artifacts/reference/"

bench: install
	$(BIN)/dcgan-bench artifacts/demo --checkpoint runs/demo/checkpoints/last.pt --out bench

# On a GPU machine after `make demo`: engines from the demo checkpoint, every gpu/trt test, and
# ort-cuda and TensorRT benchmarked against the PyTorch reference on this GPU, recorded in
# benchmarks/results/gpu-<gpu name>.md.
gpu-check: install
	$(BIN)/dcgan-export runs/demo/checkpoints/last.pt --format all --precision fp32 --out artifacts/gpu-fp32 --overwrite
	$(BIN)/dcgan-export runs/demo/checkpoints/last.pt --format trt --precision fp16 --out artifacts/gpu-fp16 --overwrite
	DCGAN_REQUIRE_GPU=1 $(BIN)/python -m pytest -q -m "gpu or trt"
	$(BIN)/dcgan-bench artifacts/gpu-fp32 --checkpoint runs/demo/checkpoints/last.pt --out bench/gpu-fp32
	$(BIN)/dcgan-bench artifacts/gpu-fp16 --checkpoint runs/demo/checkpoints/last.pt --out bench/gpu-fp16
	name=$$($(BIN)/python -c "from runtime.cuda import gpu_info; print(gpu_info(0).name.replace(' ', '-'))"); \
		cat bench/gpu-fp32/bench.md bench/gpu-fp16/bench.md > benchmarks/results/gpu-$$name.md; \
		echo "recorded benchmarks/results/gpu-$$name.md"

clean:
	rm -rf $(VENV) runs artifacts out
