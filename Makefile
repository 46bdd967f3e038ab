# flywheel-airflow: `make demo` runs a full flywheel on the bundled sample logs; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Local Airflow for `make up` (the demo and the tests use their own private homes).
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
# The project is also installed in editable mode; PYTHONPATH makes sure every Airflow
# component, the triggerer included, imports this checkout's `include` package.
export PYTHONPATH := $(CURDIR)

UP_PARALLELISM ?= 4
UP_PORT ?= 8080
UP_PIDFILE := $(AIRFLOW_HOME)/standalone.pid

.PHONY: setup demo test up down clean

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

demo: setup
	$(BIN)/python scripts/demo.py

test: setup
	$(BIN)/pytest

# One shell for the whole recipe, so "already running" really stops there (an exit in a recipe line
# only ends that line). The pool is set before standalone starts (no second SQLite writer), with
# --include-deferred so deferred GPU tasks hold their slots. PATH: standalone starts its components
# as `airflow <component>` through PATH, so the venv's bin must be on it even when the venv is not
# activated. The workers reach the execution API at UP_PORT (Airflow's default assumes 8080).
# `make up` returns once every component is healthy, or fails with the end of the log.
up: setup
	@mkdir -p $(AIRFLOW_HOME)
	@if [ -f $(UP_PIDFILE) ] && kill -0 -- -$$(cat $(UP_PIDFILE)) 2>/dev/null; then \
		echo "Airflow is already running (process group $$(cat $(UP_PIDFILE))); 'make down' stops it."; exit 0; fi; \
	set -e; \
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 \
		|| { echo "airflow db migrate failed; see $(AIRFLOW_HOME)/migrate.log"; exit 1; }; \
	echo '{"admin": "admin"}' > $(AIRFLOW_HOME)/passwords.json; \
	$(BIN)/airflow pools set nemo_gpu 2 "GPU-bound NeMo work (slots = GPUs you may use)" --include-deferred > /dev/null; \
	PATH="$(CURDIR)/$(BIN):$$PATH" \
	AIRFLOW__CORE__PARALLELISM=$(UP_PARALLELISM) \
	AIRFLOW__API__PORT=$(UP_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(UP_PORT)/execution/ \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(AIRFLOW_HOME)/passwords.json \
	setsid $(BIN)/airflow standalone > $(AIRFLOW_HOME)/standalone.log 2>&1 < /dev/null & echo $$! > $(UP_PIDFILE); \
	echo "Airflow is starting (process group $$(cat $(UP_PIDFILE))); log: $(AIRFLOW_HOME)/standalone.log"; \
	pgid=$$(cat $(UP_PIDFILE)); ready=; \
	for i in $$(seq 1 90); do \
		kill -0 -- -$$pgid 2>/dev/null || break; \
		if $(BIN)/python -c 'import json, sys, urllib.request; health = json.load(urllib.request.urlopen(sys.argv[1], timeout=5)); sys.exit(0 if health and all(part.get("status") == "healthy" for part in health.values()) else 1)' \
			http://127.0.0.1:$(UP_PORT)/api/v2/monitor/health 2>/dev/null; then ready=1; break; fi; \
		sleep 2; \
	done; \
	if [ -z "$$ready" ]; then \
		echo "Airflow did not become healthy; last lines of $(AIRFLOW_HOME)/standalone.log ('make down' stops what is left):"; \
		tail -n 30 $(AIRFLOW_HOME)/standalone.log; exit 1; fi; \
	echo "Airflow is ready at http://localhost:$(UP_PORT) (user admin, password admin)."

# TERM the whole process group (standalone ignores SIGINT), wait until it is gone, KILL leftovers.
down:
	@if [ -f $(UP_PIDFILE) ]; then \
		pgid=$$(cat $(UP_PIDFILE)); \
		if kill -TERM -- -$$pgid 2>/dev/null; then \
			for i in $$(seq 1 60); do kill -0 -- -$$pgid 2>/dev/null || break; sleep 0.5; done; \
			kill -KILL -- -$$pgid 2>/dev/null || true; \
			echo "Stopped Airflow (process group $$pgid)."; \
		else echo "Airflow was not running."; fi; \
		rm -f $(UP_PIDFILE); \
	else echo "Nothing to stop: 'make up' did not start Airflow here."; fi

clean: down
	rm -rf .demo .staging .flywheel $(AIRFLOW_HOME)
