# The README's two commands:  `make demo`  and  `make test`.
# Both set everything up from nothing (a virtual environment in .venv) and are safe to re-run.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARCH   := $(shell uname -m)
# PyTorch builds known to work here (x86_64 from the local wheel cache, aarch64 a CPU build).
ifeq ($(ARCH),aarch64)
TORCH  := torch==2.9.1 torchvision==0.24.1
else
TORCH  := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: setup demo demo-multilabel demo-finetune test system-deps dataset clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

# Chromium for the browser tests; `make dataset` adds the full Fashion-MNIST (benchmarks, data/
# scripts and `pytest -m slow`), which the default test run does not need.
system-deps:
	bash scripts/install-system-deps.sh

dataset:
	bash scripts/install-system-deps.sh --dataset

# Whole pipeline on the bundled demo data: extract -> train -> report, via `dvc repro`.
demo: setup
	$(BIN)/linprobe check --params params.yaml
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@echo ""
	@echo "Report: $(abspath artifacts/report/index.html)"

# The multi-label demo (2x2 Fashion-MNIST mosaics, one-vs-rest probes): the same pipeline with two
# params switched by `dvc exp run -S` (it writes them into params.yaml; `git checkout params.yaml`
# switches back).
ML_SWITCH := -S data.path=data/fashion-mnist-mosaic/manifest.csv \
             -S '~probes.logreg' -S '~probes.linear_svm' -S '~probes.knn' \
             -S '+probes.ovr_logreg={}' -S '+probes.ovr_linear_svm={}'
demo-multilabel: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc exp run $(ML_SWITCH)
	@echo ""
	@echo "Report: $(abspath artifacts/report/index.html)"

# The demo with the fine-tune reference arms for EfficientNet-Lite0 next to the probes: `finetune`
# (its ImageNet weights trained further) and `scratch` (the same network from random init), each
# with a new linear head, trained on the demo's train split with the epoch chosen on val. Short
# settings for a 2-core CPU (one learning rate, 4 epochs); switched on with `dvc exp run -S` as
# demo-multilabel does (`git checkout params.yaml` switches back).
FT_SWITCH := -S 'finetune.backbones=[lite0]' -S finetune.epochs=4 -S 'finetune.lrs=[0.001]'
demo-finetune: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc exp run $(FT_SWITCH)
	@echo ""
	@echo "Report: $(abspath artifacts/report/index.html)"

test: setup system-deps
	$(BIN)/python -m pytest

clean:
	rm -rf artifacts dvc.lock .dvc/cache .dvc/tmp
