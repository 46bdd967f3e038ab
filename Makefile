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

up: setup
	@mkdir -p $(AIRFLOW_HOME)
	@if [ -f $(UP_PIDFILE) ] && kill -0 -- -$$(cat $(UP_PIDFILE)) 2>/dev/null; then \
		echo "Airflow is already running (process group $$(cat $(UP_PIDFILE))); 'make down' stops it."; exit 0; fi
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log
	@echo '{"admin": "admin"}' > $(AIRFLOW_HOME)/passwords.json
	AIRFLOW__CORE__PARALLELISM=$(UP_PARALLELISM) \
	AIRFLOW__API__PORT=$(UP_PORT) \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(AIRFLOW_HOME)/passwords.json \
	setsid $(BIN)/airflow standalone > $(AIRFLOW_HOME)/standalone.log 2>&1 < /dev/null & echo $$! > $(UP_PIDFILE)
	$(BIN)/airflow pools set nemo_gpu 2 "GPU-bound NeMo work (slots = GPUs you may use)" > /dev/null
	@echo "Airflow is starting at http://localhost:$(UP_PORT) (user admin, password admin); log: $(AIRFLOW_HOME)/standalone.log"

down:
	@if [ -f $(UP_PIDFILE) ]; then \
		kill -TERM -- -$$(cat $(UP_PIDFILE)) 2>/dev/null && echo "Stopped Airflow (process group $$(cat $(UP_PIDFILE)))." \
			|| echo "Airflow was not running."; \
		rm -f $(UP_PIDFILE); \
	else echo "Nothing to stop: 'make up' did not start Airflow here."; fi

clean: down
	rm -rf .demo .staging .flywheel $(AIRFLOW_HOME)
