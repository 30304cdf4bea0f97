# Two commands do all set-up on a fresh machine (see README):
#   make book   build the HTML book on the embedded simulated data -> _build/html
#   make test   lint (ruff), then run the test suite (includes building the quick book and checking it
#               in headless Chromium)
# Each creates/refreshes the virtual environment .venv and installs what it needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Tested versions. torch/torchvision: the versions this project is tested with (pip takes them from
# the local disk on the project's machines); Colab keeps its own torch (pyproject has lower bounds only).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: book test lint env browser students clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test]"
	touch $(STAMP)

# Headless Chromium and its driver (Debian packages) for the browser test of the built book.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

book: $(STAMP)
	PLOTLY_RENDERER=notebook $(VENV)/bin/jupyter-book build . -W -n --keep-going

# The linter (ruff, configured in pyproject.toml: line length 100): `make test` runs it first.
lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

test: $(STAMP) browser lint
	$(PY) -m pytest

# The student edition: students/*.ipynb (exercises blank, committed) and the student book built from them
# (not executed) into _build/students/_build/html, beside the instructor book in _build/html.
students: $(STAMP)
	$(PY) tools/make_student_notebooks.py --html _build/students

clean:
	rm -rf _build
