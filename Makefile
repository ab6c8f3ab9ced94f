# The single entry point: `make run` serves the API with demo data, `make test` runs
# everything against a real PostgreSQL. Both set up what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install run serve test test-unit lint format package migrate demo-data db-url \
        billing-run db-stop clean bench rebuild-status psql reset-demo reconcile \
        release-cancellations exactly-once ops swagger-screenshot

help:
	@echo "make run        set up, start the embedded PostgreSQL, load demo data, serve on :3000"
	@echo "make serve      the same without demo data (honours DATABASE_URL)"
	@echo "make test       set up and run the whole test suite against a real PostgreSQL"
	@echo "make test-unit  domain tests only (no database)"
	@echo "make swagger-screenshot  rewrite docs/swagger-ui.png (headless Chromium)"
	@echo "make lint       ruff check and format check"
	@echo "make format     ruff fix and format"
	@echo "make package    npx serverless package (offline)"
	@echo "make billing-run  charge what is due now, locally (fake platform), with a summary"
	@echo "make migrate    alembic upgrade head on DATABASE_URL or the embedded database"
	@echo "make db-stop    stop the embedded PostgreSQL"
	@echo "make bench      build the 10k-1M data sets, measure, write BENCHMARKS.md (< 15 min)"
	@echo "make rebuild-status  rebuild the current-status cache from history (operators)"
	@echo "make install    create .venv and node_modules (the first time: about 2 minutes)"
	@echo "make demo-data  load the demo clubs and subscriptions into an empty database"
	@echo "make reset-demo drop the embedded database and load fresh demo data (dates from now)"
	@echo "make psql       a SQL prompt on the embedded database (or DATABASE_URL); make -s psql < file.sql; ARGS=-At"
	@echo "make db-url     print the embedded database's libpq URL (FORM=sqlalchemy: SQLAlchemy's)"
	@echo "make clean      stop the embedded PostgreSQL, remove .venv, node_modules and the data"
	@echo "make help       this list"
	@echo "make reconcile  the platform's orders against the ledger (table and JSON)"
	@echo "make release-cancellations  release what the billing breaker held (ARGS=--list)"
	@echo "make exactly-once  run the fault matrix, write docs/exactly-once.md"

	@echo "make ops ARGS=...    the operators' desk: clubs, member, forecast, simulate (docs/operators-desk.md)"

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@echo "installing the pinned Python packages into $(VENV)/ (the first time: about a minute)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "installing the pinned Serverless tools with npm ci (the first time: about a minute)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

run: install
	scripts/serve.sh --demo

serve: install
	scripts/serve.sh

test: install
	$(BIN)/pytest

test-unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit

swagger-screenshot: install
	UPDATE_SWAGGER_SCREENSHOT=1 $(BIN)/pytest tests/smoke/test_swagger_ui.py

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

package: install
	PATH="$(CURDIR)/$(BIN):$$PATH" npx --no-install serverless package

# The libpq form (psql, pg_dump); `make db-url FORM=sqlalchemy` for postgresql+psycopg2://.
db-url: $(BIN)/.installed
	@$(BIN)/python -m scripts.devdb url --form $(or $(FORM),libpq)

migrate: $(BIN)/.installed
	DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m scripts.devdb url)}" $(BIN)/alembic upgrade head

demo-data: migrate
	DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m scripts.devdb url)}" $(BIN)/python -m scripts.demo_data

billing-run: migrate
	DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m scripts.devdb url)}" $(BIN)/python -m scripts.billing_run

# BENCH_ARGS=--fresh regenerates the data sets (and times it); BENCH_ARGS="--sizes 10000".
bench: install
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python -m bench $(BENCH_ARGS)

rebuild-status: $(BIN)/.installed
	DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m scripts.devdb url)}" $(BIN)/python -m scripts.rebuild_status

db-stop: $(BIN)/.installed
	$(BIN)/python -m scripts.devdb stop
	$(BIN)/python -m scripts.devdb stop --data .pgdata-test
	$(BIN)/python -m scripts.devdb stop --data .pgdata-bench

clean: db-stop
	rm -rf $(VENV) node_modules .serverless .pgdata .pgdata-test .pgdata-bench

# A SQL prompt with pgserver's own psql (no PostgreSQL client needed on the machine).
psql: $(BIN)/.installed
	@$(BIN)/python -m scripts.devdb psql $(ARGS)

# Only the embedded database: a database named by DATABASE_URL is not ours to drop.
reset-demo: $(BIN)/.installed
	@if [ -n "$$DATABASE_URL" ]; then echo "make reset-demo resets the embedded database only; DATABASE_URL is set: unset it, or reset that database yourself"; exit 2; fi
	$(BIN)/python -m scripts.devdb reset
	$(MAKE) --no-print-directory demo-data

# The money path (issue 12): reconciliation, the breaker's release, the exactly-once table.
reconcile: migrate
	DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m scripts.devdb url)}" $(BIN)/python -m scripts.reconcile $(ARGS)

release-cancellations: migrate
	DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m scripts.devdb url)}" $(BIN)/python -m scripts.release_cancellations $(ARGS)

exactly-once: install
	$(BIN)/python -m scripts.exactly_once

# The operators' desk (docs/operators-desk.md): make ops ARGS="member <id>"
ops: migrate
	DATABASE_URL="$${DATABASE_URL:-$$($(BIN)/python -m scripts.devdb url)}" $(BIN)/python -m ops $(ARGS)
