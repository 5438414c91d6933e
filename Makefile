# Every target creates .venv on first use, so a fresh checkout needs nothing but python3.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format bench bench-demo bench-recorder screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

PORT ?= 8000

run: $(STAMP)
	$(BIN)/activitylog migrate
	$(BIN)/activitylog demo --reuse --no-migrate --port $(PORT)
	$(BIN)/activitylog serve --no-migrate --port $(PORT)

test: $(STAMP)
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy
	MYPYPATH=bench $(BIN)/mypy bench
	$(BIN)/mypy tools

format: $(STAMP)
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

bench: $(STAMP)
	$(BIN)/python bench/run.py
bench-pages: $(STAMP) ; $(BIN)/python bench/pages.py
bench-proofs: $(STAMP) ; $(BIN)/python bench/proofs.py
bench-demo: $(STAMP) ; $(BIN)/python bench/demo.py
bench-recorder: $(STAMP) ; $(BIN)/python bench/recorder.py

# The README's pictures, taken by the browser test itself.
screenshots: $(STAMP)
	mkdir -p docs/screenshots
	ACTIVITYLOG_SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest tests/test_dashboard_browser.py tests/test_timeline_browser.py tests/test_saved_views_browser.py tests/test_retention_dashboard.py -k sqlite -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info src/*.egg-info
