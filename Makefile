# Two commands for a newcomer (README): `make demo` (the main job) and `make test` (ruff, then pytest).
PY := .venv/bin/python
export DETECTRON2_DATASETS ?= $(CURDIR)/datasets

.PHONY: setup test demo clean
setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q tests

demo: setup
	bash scripts/demo.sh

clean:
	rm -rf output datasets/synthetic_vis .pytest_cache
