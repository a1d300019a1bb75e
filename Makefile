# Quick start: `make demo` (set up, start the local stack, classify the sample ZIP), `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# One install per role (pyproject.toml extras): `local` runs the whole stack on embedded servers, `test` adds
# training and the test tools. Each stamp is redone when pyproject.toml changes.
LOCAL  := $(VENV)/.installed-local
STAMP  := $(VENV)/.installed-test

.PHONY: install demo up down test test-fast lint-imports bench train train-photo evaluate clean

$(VENV)/.installed-%: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

install: $(STAMP)

demo: $(LOCAL)
	$(BIN)/fashion-batch demo

up: $(LOCAL)
	$(BIN)/fashion-batch up

down: $(LOCAL)
	$(BIN)/fashion-batch down

# The suite includes the import-linter contracts (tests/test_architecture.py).
test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint-imports: $(STAMP)
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/fashion-batch bench --images 10000 --json bench-out/bench.json

# The shipped weights, made as they were: four invocations, each resuming from the previous one's model
# (README, "Training"): three on Fashion-MNIST, then real photos with Fashion-MNIST replay. About 110 minutes
# on 2 cores without a GPU. The last phase calibrates with finetune_photos' default `--calibration heldout`, the
# method leave-one-source-out on the held-out photos chose (training/EXPERIMENTS.md section 7).
TRAIN_RUNS := runs/train
train: $(STAMP)
	$(BIN)/fashion-batch train --epochs 30 --finetune-epochs 0 --no-mirror --out $(TRAIN_RUNS)/1-main
	$(BIN)/fashion-batch train --resume $(TRAIN_RUNS)/1-main/model.pt --finetune-epochs 6 --finetune-lr 0.01 \
		--finetune-p-any 0.3 --no-mirror --out $(TRAIN_RUNS)/2-finetune
	$(BIN)/fashion-batch train --resume $(TRAIN_RUNS)/2-finetune/model.pt --finetune-epochs 8 --finetune-lr 0.008 \
		--finetune-p-any 0.1 --threads 1 --out $(TRAIN_RUNS)/3-mirror
	$(BIN)/fashion-batch train --photos ../shared/datasets/realphoto-train --resume $(TRAIN_RUNS)/3-mirror/model.pt \
		--steps 600 --preprocess '{"garment": true}' --wise 0.5 --threads 1 --cache-dir $(TRAIN_RUNS)/cache --out weights/fmnist

# The shipped photo model (weights/photo), made as it was: EfficientNet-Lite0 from its ImageNet weights, head first,
# then a gentle fine-tune of its top on realphoto-train (held-out quarter selects and calibrates) and Fashion-MNIST
# (rendered and grey); every backend exported, INT8 calibrated on photos (training/photo_train.py).
train-photo: $(STAMP)
	$(BIN)/python -m training.photo_train --photos ../shared/datasets/realphoto-train --cache-dir runs/photo-cache \
		--out weights/photo

evaluate: $(STAMP)
	$(BIN)/fashion-batch evaluate

clean:
	rm -rf .data bench-out .pytest_cache
