# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export FLASK_APP := wsgi

.PHONY: run test test-sqlite test-postgres venv venv-dev bench clean translations

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

# Links in API answers, mails and labels point at the local server.
run: export RMA_BASE_URL ?= http://$(HOST):$(PORT)

## run: install, migrate the SQLite database, load demo data, serve with the scheduler beside it
run: venv
	$(BIN)/flask db upgrade
	$(BIN)/flask rma demo-data
	@echo "Scheduler starting in the background (reminders, webhooks, mail, labels)."
	@$(BIN)/flask rma scheduler & trap "kill $$! 2>/dev/null" EXIT INT TERM; \
	  echo ""; \
	  echo "  Customer returns page:  http://$(HOST):$(PORT)/returns/"; \
	  echo "  Admin view:             http://$(HOST):$(PORT)/admin/   (admin@example.com / demo-password)"; \
	  echo "  API docs:               http://$(HOST):$(PORT)/api/docs"; \
	  echo ""; \
	  $(BIN)/gunicorn --config gunicorn.conf.py --bind $(HOST):$(PORT) --workers 2 --access-logfile - wsgi:app

## test: the whole suite, on SQLite and on PostgreSQL
test: venv-dev
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: venv-dev
	@echo "== test suite on SQLite"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: venv-dev
	@echo "== test suite on PostgreSQL ($(PG_TEST_URL))"
	RMA_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv-dev
	$(BIN)/python bench/bench_create_return.py
	$(BIN)/python bench/bench_labels.py

## translations: re-extract the customer pages' texts, merge them into each language, compile.
## The compiled .mo files are committed, so the app needs no compile step to run.
TRANSLATIONS := rma_service/translations
translations: venv-dev
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext -k _l --no-location --sort-output \
	  --project="RMA service" -o $(TRANSLATIONS)/messages.pot .
	$(BIN)/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) \
	  --width=100 --ignore-obsolete
	$(BIN)/pybabel compile -d $(TRANSLATIONS) --statistics

clean:
	rm -rf $(VENV) instance/*.sqlite3* .pytest_cache
