# The two commands of the README. Both create .venv when it is missing and (re)install the
# package into it, editable with its test extra, whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed
STORAGE ?= $(CURDIR)/results

.PHONY: test demo

$(INSTALLED): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -q

demo: $(INSTALLED)
	$(VENV)/bin/genzoo demo --storage $(STORAGE)
