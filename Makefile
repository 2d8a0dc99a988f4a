# The template's entry points. Each creates .venv from requirements-dev.txt on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := build/demo
DEMO_PORT ?= 8765

.PHONY: demo test test-slow lock bench bench-training bench-sentiment bench-scale bench-deploy bench-gan bench-finetune bench-finetune-peers bench-vision bench-experiments lint clean

# The environment is exactly the lock: requirements-dev.txt pins every package, with its hashes, so a fresh clone
# installs what the last `make lock` tested, whatever has been released since.
$(VENV)/installed: requirements-dev.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.txt
	$(BIN)/pip-sync --quiet requirements-dev.txt  # and removes what an older lock installed that this one lacks
	touch $@

# Refresh the lock: resolve requirements-dev.in to the newest releases (torch stays at its pin), install them, and
# derive again what depends on them: the hook's shadowed-module list, and the generated project's constraints for
# each Python it supports (tools/project_lock.py; needs python3.10 ... python3.13 on PATH). Then run make test
# and commit the diff. The scheduled workflow .github/workflows/lock.yml does the same and opens a pull request.
lock: $(VENV)/installed
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements-dev.txt requirements-dev.in
	$(BIN)/pip-sync --quiet requirements-dev.txt
	touch $(VENV)/installed
	$(BIN)/python tools/shadowed_modules.py
	$(BIN)/python tools/project_lock.py

# Bake the default project, install it, train and test the synthetic tasks (offline), say where the results are,
# then export and quantize the XOR model, serve it, and print one prediction from the running server.
demo: $(VENV)/installed
	rm -rf $(DEMO)
	$(BIN)/cookiecutter --no-input --output-dir $(DEMO) .
	$(BIN)/pip install --quiet --no-deps -e $(DEMO)/roadmap-project
	cd $(DEMO)/roadmap-project && for task in linear_regression xor; do \
		$(CURDIR)/$(BIN)/roadmap-project fit --config configs/$$task.yaml --trainer.enable_progress_bar false || exit 1; \
		$(CURDIR)/$(BIN)/roadmap-project test --config configs/$$task.yaml --ckpt_path best --trainer.enable_progress_bar false || exit 1; \
	done
	@echo; echo "Demo project: $(DEMO)/roadmap-project. Its runs (checkpoints, config.yaml, TensorBoard metrics, PNG plots):"
	@cd $(DEMO)/roadmap-project && find runs -type f \( -name '*.ckpt' -o -name '*.png' -o -name 'config.yaml' -o -name 'events.*' \) | sort | sed 's/^/  /'
	@echo "Look at the curves: tensorboard --logdir $(DEMO)/roadmap-project/runs"
	@echo; echo "Export XOR to ONNX and int8, serve the int8 model, ask it for a prediction:"
	cd $(DEMO)/roadmap-project && $(CURDIR)/$(BIN)/roadmap-project export --config configs/xor.yaml --ckpt_path best --quantize int8
	cd $(DEMO)/roadmap-project && $(CURDIR)/$(BIN)/python $(CURDIR)/benchmarks/ask_server.py \
		--port $(DEMO_PORT) --body '{"x": [[0, 1], [1, 1]]}' -- \
		$(CURDIR)/$(BIN)/roadmap-project serve --model runs/xor/version_0/export/model_int8.onnx --port $(DEMO_PORT)

# The template's own tests; pytest's exit code 5 (no test collected) counts as a failure. `test` leaves out the slow
# ones (the baked project's slow tests, the container image), `test-slow` runs only those; .ci/run runs both.
test: $(VENV)/installed
	$(BIN)/pytest tests

test-slow: $(VENV)/installed
	$(BIN)/pytest -m slow tests

bench: bench-training bench-sentiment bench-scale bench-deploy bench-gan bench-finetune bench-finetune-peers bench-vision bench-experiments

bench-training: $(VENV)/installed
	$(BIN)/python benchmarks/training.py

bench-sentiment: $(VENV)/installed
	$(BIN)/python benchmarks/sentiment.py

bench-scale: $(VENV)/installed
	$(BIN)/python benchmarks/scale.py

bench-deploy: $(VENV)/installed
	$(BIN)/python benchmarks/deploy.py

bench-gan: $(VENV)/installed
	$(BIN)/python benchmarks/gan.py

bench-finetune: $(VENV)/installed
	$(BIN)/python benchmarks/finetune.py

bench-finetune-peers: $(VENV)/installed
	$(BIN)/python benchmarks/finetune_peers.py

bench-vision: $(VENV)/installed
	$(BIN)/python benchmarks/vision.py

bench-experiments: $(VENV)/installed
	$(BIN)/python benchmarks/experiments.py

lint: $(VENV)/installed
	$(BIN)/ruff check hooks tests benchmarks
	$(BIN)/ruff format --check hooks tests benchmarks

clean:
	rm -rf $(VENV) build
