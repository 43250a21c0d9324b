# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean system-packages

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The demo routes with a model trained on the team's labelled sample (a city trains on its own
# history: `hotline router train history.csv`).
demo: install
	@test -f var/router-model.joblib || $(BIN)/hotline router train \
		tests/data/labelled_sample.csv --out var/router-model.joblib > /dev/null
	$(BIN)/hotline demo

# Real servers the tests start themselves: dovecot (IMAP, the mayor's mailbox) and wrk (load
# generator of bench/web_intake.py). Redis and PostgreSQL already run on this kind of machine.
# asterisk-core-sounds-en-wav: the prompts of the real Asterisk in tests/asterisk/ (the bundle in
# ../shared/asterisk/ has none; without pbx-transfer Asterisk aborts an attended transfer).
# faketime: tests/test_any_date.py reruns the date-sensitive tests at other dates.
DEBS := dovecot-imapd wrk espeak-ng sox asterisk-core-sounds-en-wav faketime
system-packages:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "apt-get install$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

# Types, unused/undefined names and the packages' dependency rules (import-linter contracts in
# pyproject.toml) are part of the test: mypy --strict, pyflakes, lint-imports, then the suite.
test: install system-packages
	$(BIN)/mypy --strict asr channels config db hotline httpkit privacy router telephony
	$(BIN)/python -m pyflakes asr channels config db hotline httpkit privacy router telephony bench
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: install system-packages
	$(BIN)/python bench/ami_ingest.py
	$(BIN)/python bench/web_intake.py
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/router.py
	$(BIN)/python bench/asr.py

clean:
	rm -rf $(VENV) var .pytest_cache
