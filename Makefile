# Two commands matter: `make run` (start the bot) and `make test` (lint, type-check, test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# TensorFlow's extra: cpu, or gpu on a Linux machine with an NVIDIA GPU (README, "GPU workers";
# in a fresh venv, e.g. `make run TENSORFLOW=gpu VENV=.venv-gpu`: the two must not share one).
TENSORFLOW ?= cpu
# Re-install only when the project's metadata changes.
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev
# gettext catalogs: the .po files are sources (in git), the .mo files are built from them.
LOCALE_DIR := bot/locale
POT := $(LOCALE_DIR)/stylebot.pot
MO_FILES := $(patsubst %.po,%.mo,$(wildcard $(LOCALE_DIR)/*/LC_MESSAGES/stylebot.po))

.PHONY: run test lint typecheck pytest stylize bench clean locale messages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -qq -e '.[$(TENSORFLOW),celery]'
	touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -qq -e '.[$(TENSORFLOW),celery,dev]'
	touch $@ $(STAMP_RUN)

# Reads .env when present (KEY=VALUE lines), then starts the bot with the embedded defaults:
# SQLite under ./data and a local process pool.
# The built-in preset paintings are downloaded once (skipped, with a note, when offline).
run: $(STAMP_RUN) locale
	@set -a; [ -f .env ] && . ./.env; set +a; \
	if [ -n "$${TELEGRAM_BOT_TOKEN:-}" ]; then \
	  $(BIN)/python -m bot.presets fetch >/dev/null 2>&1 || \
	  echo "note: built-in style presets could not be downloaded (offline?); see README, Troubleshooting"; \
	fi; \
	exec $(BIN)/python -m bot

test: $(STAMP_DEV) locale lint typecheck pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP_DEV)
	$(BIN)/mypy bot engine

# pytest exits 5 when it collects nothing: that is a failure here, as any non-zero code is.
pytest: $(STAMP_DEV) locale
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Compile the translations (bot/locale/<lang>/LC_MESSAGES/stylebot.mo) from their .po files.
locale: $(MO_FILES)

$(LOCALE_DIR)/%/LC_MESSAGES/stylebot.mo: $(LOCALE_DIR)/%/LC_MESSAGES/stylebot.po | $(STAMP_RUN)
	$(BIN)/pybabel compile --domain stylebot --input-file $< --output-file $@ --locale $*

# After changing sentences in bot/texts.py: extract the msgids into the template and merge
# them into every language's .po file (then translate what is new or fuzzy).
messages: $(STAMP_RUN)
	$(BIN)/pybabel extract --mapping-file babel.cfg --output-file $(POT) \
	    --project stylebot --copyright-holder "stylebot contributors" \
	    --add-comments TRANSLATORS: --add-location file --sort-by-file --width 100 .
	$(BIN)/pybabel update --domain stylebot --input-file $(POT) --output-dir $(LOCALE_DIR) \
	    --width 100 --ignore-obsolete

# make stylize ARGS="content.jpg style.jpg -o out.jpg"
stylize: $(STAMP_RUN)
	$(BIN)/python -m engine $(ARGS)

bench: $(STAMP_DEV)
	$(BIN)/python benchmarks/bench_engine.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info $(MO_FILES)
