# The two commands of the README: `make book` and `make test`. Both create .venv/ if missing.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: book test venv clean mathjax dashboard repro-check

# MathJax 3, served from the built site so that formulas render with no network at view time.
MATHJAX_VERSION := 3.2.2
MATHJAX := book/_static/mathjax/tex-chtml.js

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $(STAMP)

mathjax: $(MATHJAX)

$(MATHJAX):
	rm -rf book/_static/mathjax _build/mathjax-pack && mkdir -p _build/mathjax-pack book/_static
	cd _build/mathjax-pack && npm pack -q mathjax@$(MATHJAX_VERSION) >/dev/null && tar xzf mathjax-$(MATHJAX_VERSION).tgz
	mv _build/mathjax-pack/package/es5 book/_static/mathjax && rm -rf _build/mathjax-pack

# The landing page's dashboard, generated from the records (trs_lib.companion.dashboard).
dashboard: $(STAMP)
	# records/, not results/: _config.yml's exclude_patterns (results/*) also filter the static files
	rm -rf book/_static/records
	$(VENV)/bin/python -m trs_lib.companion.dashboard book/_generated/dashboard.md --records book/_static/records

book: $(STAMP) $(MATHJAX) dashboard
	$(VENV)/bin/jupyter-book build . -W --keep-going
	@echo "book: _build/html/index.html"

test: $(STAMP)
	$(VENV)/bin/python -m pytest --nbval --nbval-sanitize-with tests/sanitize.cfg -q -rs tests notebooks

# Not in CI: retrain one committed TRS cell from this commit and check its clean and worst-case
# accuracy against the committed record's intervals (report: results/repro_check.md; ~10 min).
repro-check: $(STAMP)
	$(VENV)/bin/python -m trs_lib.companion.repro_check

clean:
	rm -rf _build
