# The two commands of the README: `make book` and `make test`. Both create .venv/ if missing.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: book test venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W --keep-going
	@echo "book: _build/html/index.html"

test: $(STAMP)
	$(VENV)/bin/python -m pytest --nbval --nbval-sanitize-with tests/sanitize.cfg -q tests notebooks

clean:
	rm -rf _build
