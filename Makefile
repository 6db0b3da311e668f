# Every target installs what it needs by itself: a fresh machine runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_VIDEO ?= $(firstword $(wildcard ../shared/data/single_face.mp4))
OUT    ?= out

.PHONY: demo test lint venv models system-deps test-clients clean

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

DEMO_SECONDS ?= 30

# 1. the streaming pipeline over a real face clip (JSON + one-page report);
# 2. the live story: service + a synthetic participant joining over real WebRTC, cues printed.
#    WebRTC needs a non-loopback address, so here it runs in a private network namespace when
#    one can be made; on a laptop, `.venv/bin/python -m bridge.cli demo` serves the dashboard to
#    your browser at the URL it prints.
demo: models system-deps
	@mkdir -p $(OUT)
	$(BIN)/python -m bench.make_demo_video $(OUT)/demo_face.mp4 $(DEMO_VIDEO)
	$(BIN)/microcue analyze $(OUT)/demo_face.mp4 --json $(OUT)/demo_face.json --report $(OUT)/demo_face.html
	@if scripts/netns-run.sh true >/dev/null 2>&1; then \
	  scripts/netns-run.sh $(BIN)/python -m bridge.cli --data-dir $(OUT)/demo-data demo --duration $(DEMO_SECONDS); \
	else \
	  $(BIN)/python -m bridge.cli --data-dir $(OUT)/demo-data demo --duration $(DEMO_SECONDS); \
	fi

test: models system-deps test-clients
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
