# Every target installs what it needs by itself: a fresh machine runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_VIDEO ?= $(firstword $(wildcard ../shared/data/single_face.mp4))
OUT    ?= out

.PHONY: demo test lint venv models system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

models: venv
	$(BIN)/microcue models fetch

# Debian packages the WebRTC/voice tests need (janus, espeak-ng, iproute2; see the script); no-op when present.
system-deps:
	@bash scripts/system-deps.sh

demo: models
	@mkdir -p $(OUT)
	$(BIN)/python -m bench.make_demo_video $(OUT)/demo_face.mp4 $(DEMO_VIDEO)
	$(BIN)/microcue analyze $(OUT)/demo_face.mp4 --json $(OUT)/demo_face.json --report $(OUT)/demo_face.html

test: models system-deps
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
