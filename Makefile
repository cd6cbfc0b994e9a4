# Two commands on a fresh machine with Python >= 3.11 and make:  `make run`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock requirements-dev.lock pyproject.toml clients/python/pyproject.toml | cksum | cut -d' ' -f1)
export DATABASE_URL ?= sqlite:///./var/voucher.db
# `make run` is the embedded demo: always ./var/voucher.db, whatever DATABASE_URL says (an
# exported PostgreSQL URL would get the demo's programmes and keys); `make run PORT=8080`.
RUN_DATABASE_URL := sqlite:///./var/voucher.db
HOST := 127.0.0.1
PORT := 8000

.PHONY: help install run serve migrate demo test lint messages openapi openapi-check client clean lock bench bench-redeem bench-scale bench-export bench-console fuzz soak

## what each target does (this list)
help:
	@awk '/^## /{doc = doc "    " substr($$0, 4) "\n"; next} \
	     /^[a-z-]+:/ && doc {printf "make %s\n%s", substr($$0, 1, index($$0, ":") - 1), doc} {doc = ""}' $(MAKEFILE_LIST)

## the virtual environment .venv with every pinned dependency (requirements-dev.lock); every
## target below runs it first
install: $(STAMP)

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml clients/python/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77"
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e clients/python
	@rm -f $(VENV)/.installed-*
	@touch $@

## migrate the embedded database ./var/voucher.db, load the demo, print demo keys, serve on
## 127.0.0.1:8000 (HOST=, PORT= to change) in sandbox mode (errors in zh-CN unless a request asks
## for English or VOUCHER_DEFAULT_LANGUAGE says otherwise; webhooks may reach this machine)
run: install
	DATABASE_URL=$(RUN_DATABASE_URL) $(BIN)/voucher db upgrade
	DATABASE_URL=$(RUN_DATABASE_URL) VOUCHER_SANDBOX=$${VOUCHER_SANDBOX:-true} $(BIN)/voucher demo
	DATABASE_URL=$(RUN_DATABASE_URL) VOUCHER_DEFAULT_LANGUAGE=$${VOUCHER_DEFAULT_LANGUAGE:-zh-CN} \
	  VOUCHER_WORKER_IN_PROCESS=$${VOUCHER_WORKER_IN_PROCESS:-true} VOUCHER_SANDBOX=$${VOUCHER_SANDBOX:-true} \
	  VOUCHER_WEBHOOK_ALLOWED_NETWORKS="$${VOUCHER_WEBHOOK_ALLOWED_NETWORKS:-[\"127.0.0.0/8\"]}" \
	  $(BIN)/voucher serve --host $(HOST) --port $(PORT)

## serve the API on DATABASE_URL (voucher serve; VOUCHER_* settings, docs/: no demo, no migration)
serve: install
	$(BIN)/voucher serve

## migrate DATABASE_URL to this build's schema (voucher db upgrade)
migrate: install
	$(BIN)/voucher db upgrade

## load the demo programme, providers, enterprise and keys into DATABASE_URL (voucher demo)
demo: install
	$(BIN)/voucher demo

## the whole suite (SQLite; PostgreSQL too when VOUCHER_TEST_POSTGRES_URL is set), in TEST_WORKERS
## processes (default 2; a test file stays in one process); it ends with the 20 slowest steps
test: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check services tests migrations clients
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $${TEST_WORKERS:-2} --dist loadfile --durations=20

## ruff, the import-linter architecture contracts and mypy (make test runs them first)
lint: install
	$(BIN)/ruff check services tests migrations clients
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

## bring the message catalogue (services/voucher/locale/zh_CN/LC_MESSAGES/voucher.po) in step with
## the code: new messages are added without Chinese (write it), unused ones are dropped
messages: install
	$(BIN)/python -m services.voucher.catalogue update

## regenerate the committed OpenAPI document from the app, and the typed client from it
openapi: install
	$(BIN)/python -m services.voucher.openapi_doc write
	$(BIN)/python clients/python/generate.py

## fail if the committed OpenAPI document differs from the app's
openapi-check: install
	$(BIN)/python -m services.voucher.openapi_doc check

## regenerate the typed API client (clients/python/voucher_client/_generated.py, the voucher-client
## distribution) from openapi/openapi.json
client: install
	$(BIN)/python clients/python/generate.py

## re-pin every dependency (needs the package index): the runtime set the image installs
## (requirements.lock) and the runtime plus dev tools `make install` uses (requirements-dev.lock)
lock:
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o requirements-dev.lock

## remove .venv, the demo's database (var/) and the tools' caches: the next make run starts afresh
clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

## every benchmark, one after the other (prints tables; judges nothing): redemption against the
## raw-SQL ceiling, then scale (balance reads at 10k vs 2M postings, settling 100k captures),
## then the 1,000,000-row streaming export, then a valid key under a flood of unknown keys,
## then the console's dashboard over 100,000 redemptions
bench: install
	$(BIN)/python bench/redeem.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/auth_flood.py
	$(BIN)/python bench/console.py

## redemption throughput through real server processes on PostgreSQL, beside the reference app
bench-redeem: install
	$(BIN)/python bench/redeem.py

## voucher balance reads with 10,000 vs 2,000,000 postings; settlement of 100,000 captures
bench-scale: install
	$(BIN)/python bench/scale.py

## streaming export of 1,000,000 ledger postings through a real server on PostgreSQL: rows/s,
## the server's peak RSS, and each file checked against its manifest (database <db>_export)
bench-export: install
	$(BIN)/python bench/export.py

## the console's dashboard rendered over 100,000 captured redemptions on PostgreSQL (render time;
## its spent figure checked against the trial balance)
bench-console: install
	$(BIN)/python bench/console.py

## API fuzzing, long: schemathesis against the committed OpenAPI document, every operation as
## every role, random (FUZZ_EXAMPLES per operation and role, default 50)
fuzz: install
	VOUCHER_FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-50} VOUCHER_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/fuzz

## faults, then proof: two service processes on PostgreSQL under retrying redeem/capture/refund
## load, >= 10 SIGKILLs and a PostgreSQL restart; then every success is in the ledger once, no
## order charged twice, reconciliation and the audit chain clean (SOAK_MINUTES, default 8)
soak: install
	$(BIN)/python bench/soak.py
