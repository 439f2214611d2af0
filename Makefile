# Two commands on a fresh machine with Python 3.12+: `make run`, `make test`.

PYTHON ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
# Extra arguments for pytest, e.g. `make test PYTEST_ARGS="-k smtp -x"`.
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv venv-test run admin test test-fast bench lint format messages clean

help:
	@echo "make run    set up .venv, migrate, start Redis (if needed), worker, beat, daphne (and a local mailbox without EMAIL_HOST)"
	@echo "make admin  a login for the admin (development): creates or resets the user admin"
	@echo "make test   set up .venv with the test requirements and run the whole suite (SQLite, then PostgreSQL)"
	@echo "make test-fast  the suite without browser and multi-process tests (-m 'not slow')"
	@echo "make bench  the app side by side with the tutorial's shape, open loop; writes docs/benchmarks.md (at most 25 min)"
	@echo "make lint   ruff check and format check"
	@echo "make messages  update locale/*/django.po from the code and compile the .mo (needs gettext)"
	@echo "make clean  remove .venv and caches"
	@echo "README.md is the map; docs/ has configuration, deploying, failures and tests"

# The interpreter: refuse anything older than 3.12 with a message that says so.
$(VENV_PYTHON):
	@$(PYTHON) -c 'import sys; sys.exit(0) if sys.version_info >= (3, 12) else sys.exit("Python 3.12 or newer is needed; $(PYTHON) is %s (%s). Install it, or run make PYTHON=/path/to/python3.12" % (sys.version.split()[0], sys.executable))'
	$(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --upgrade pip

# Stamps: pip runs again only when a requirements file changes.
$(VENV)/.stamp-requirements: requirements.txt | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -r requirements.txt
	@touch $@

$(VENV)/.stamp-requirements-test: requirements.txt requirements-test.txt | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install -r requirements-test.txt
	@touch $@ $(VENV)/.stamp-requirements

venv: $(VENV)/.stamp-requirements
venv-test: $(VENV)/.stamp-requirements-test

run: venv
	$(VENV_PYTHON) manage.py migrate --noinput
	exec $(VENV_PYTHON) -m devtools.run

# Development only: prints a fresh random password for the superuser `admin`.
admin: venv
	$(VENV_PYTHON) manage.py migrate --noinput --verbosity 0
	$(VENV_PYTHON) -m devtools.admin_login

# Two passes: the whole suite on SQLite, then the tests whose behaviour may
# differ between databases (marked `engines`) and the PostgreSQL-only ones on a
# private PostgreSQL server started for the run (tests/session_env.py).
test: venv-test
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)
	TEST_DATABASE=postgres $(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

# No Chromium, no worker or daphne processes: markers applied in tests/conftest.py.
test-fast: venv-test
	$(VENV_PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

# The open-loop bench on this machine, load to 127.0.0.1 only; writes docs/benchmarks.md and
# docs/benchmarks.json (no profiler: `python -m devtools.bench --profile DIR` is a separate run).
# The tutorial's shape (devtools/bench/baseline) runs first, the app after it, on the same load.
# Extra arguments, e.g. `make bench BENCH_ARGS="--quick"` or "--configs baseline,postgres
# --scenarios submit".
BENCH_ARGS ?=
bench: venv-test
	BENCH_COMMAND="make bench $(if $(BENCH_ARGS),BENCH_ARGS='$(BENCH_ARGS)')" \
		$(VENV_PYTHON) -m devtools.bench $(BENCH_ARGS)

$(VENV)/.stamp-ruff: | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install --quiet ruff==0.17.6
	@touch $@

lint: $(VENV)/.stamp-ruff
	$(VENV_PYTHON) -m ruff check .
	$(VENV_PYTHON) -m ruff format --check .

format: $(VENV)/.stamp-ruff
	$(VENV_PYTHON) -m ruff check --fix .
	$(VENV_PYTHON) -m ruff format .

# The translations (see "Adding a language" in docs/languages.md): every marked string
# into each locale/<lang>/LC_MESSAGES/django.po, then the .mo that Django reads.
# The tooling and tests are not the app: tests/test_i18n.py reads the same.
MESSAGES_IGNORE := --ignore ".venv/*" --ignore "tests/*" --ignore "devtools/*" \
	--ignore "docs/*" --ignore "deploy/*" --ignore "staticfiles/*" --ignore "var/*"
messages: venv
	$(VENV_PYTHON) manage.py makemessages --all --add-location file $(MESSAGES_IGNORE)
	$(VENV_PYTHON) manage.py compilemessages --ignore ".venv"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
