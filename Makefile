# Every target installs what it needs by itself: a fresh machine runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out

.PHONY: demo test check lint venv models system-deps test-clients clean

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

# Third-party WHIP client for the WHIP e2e test, cached under ~/.cache/microcue/npm.
test-clients: system-deps
	@bash scripts/test-clients.sh

DEMO_VIDEO ?= tests/data/single_face.mp4

# 1. the streaming pipeline over a real face clip (JSON + one-page report);
# 2. the live story until Ctrl-C: service + a synthetic participant joining over real WebRTC,
#    the dashboard URL printed for your browser, every cue printed. `microcue demo` runs WebRTC in
#    a private network namespace where it can make one and forwards the URL's port to it.
demo: models system-deps
	@mkdir -p $(OUT)
	$(BIN)/microcue analyze $(DEMO_VIDEO) --json $(OUT)/demo_face.json --report $(OUT)/demo_face.html
	$(BIN)/microcue --data-dir $(OUT)/demo-data demo

# The whole suite: what CI runs (.ci/run). Static checks first, they fail in seconds; the 15
# slowest tests are listed at the end, to see where the time goes on a slow host.
test: models system-deps test-clients lint
	$(BIN)/pytest --durations=15

# The quick lane for the edit-test loop (under 3 min on 2 cores once `make test` has set things
# up): the static checks and the unit tests, which need no server, browser or network namespace.
check: venv lint
	$(BIN)/pytest -m unit -q

# ruff (lint and format), the import-layer contracts and mypy.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
