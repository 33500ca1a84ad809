# The two commands: `make run` and `make test`. Both work from a fresh clone with only
# Python 3.11 (and the package registries) on the machine.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Tests and CI use the machine's real PostgreSQL and Redis.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/isp
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

# Debian packages: Noto fonts (Bangla + Latin) for invoice PDFs, poppler to check them in tests.
SYSTEM_PACKAGES := fonts-noto-core poppler-utils

.PHONY: run test install lint check-migrations system-deps clean

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; \
	  else echo "Please install the Debian packages:$$missing (PDF invoices need them)"; fi; \
	fi

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) system-deps

run: $(STAMP) system-deps
	$(BIN)/python -m ispcore.run

test: $(STAMP) system-deps
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) DEBUG=true \
	  $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

check-migrations: $(STAMP)
	DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var staticfiles
