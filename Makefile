# The README's commands. Each target is self-contained on a fresh machine with Python 3.11.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
export ROADSEG_CACHE ?= $(HOME)/.cache/roadseg

.PHONY: setup demo test bench lint clean media docs

$(BIN)/roadseg: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[test,ray]'
	touch $@

setup: $(BIN)/roadseg
	$(BIN)/roadseg weights fetch hed
	$(BIN)/roadseg weights fetch efficientnet-lite0

demo: setup
	$(BIN)/roadseg demo --data $(DATA) --out runs/demo

test: setup
	bash .ci/browser.sh
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/roadseg benchmark --data $(DATA)/kitti_road

# the README's pictures (docs/media/): the sample frame, its bird's-eye view, the annotated clip; about 30 s
media: $(BIN)/roadseg
	ROADSEG_DATA=$(DATA) $(BIN)/python scripts/make_media.py

# the generated parts of docs/: cli.md from the parsers, the benchmark table (tests/test_docs.py checks them)
docs: $(BIN)/roadseg
	$(BIN)/python scripts/gen_docs.py

clean:
	rm -rf $(VENV) runs .pytest_cache
