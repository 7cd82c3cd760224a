# Two commands set everything up on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench sheets mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check tipd tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy tipd

unit: $(STAMP)
	$(BIN)/pytest

# mutation testing of the safety core (tipd/safety.py, tipd/policy.py; minutes, not in `test`):
# every mutant the tests do not kill is listed; docs/mutation.md says which are equivalent
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet mutmut==3.8.1
	rm -rf mutants
	$(BIN)/mutmut run || true
	$(BIN)/mutmut results

bench: $(STAMP)
	$(BIN)/python bench/synth.py

sheets: $(STAMP)
	$(BIN)/tipd synth --sheet docs/synth-au111.png --surface au111
	$(BIN)/tipd synth --sheet docs/synth-cu111.png --surface cu111
	$(BIN)/tipd synth --sheet docs/synth-hsi100.png --surface hsi100
	$(BIN)/tipd synth --sheet docs/synth-generic.png --surface generic
	$(BIN)/tipd synth --compare docs/synth-vs-real.png --fixtures ../shared/fixtures

clean:
	rm -rf $(VENV) demo-out mutants .mypy_cache .ruff_cache .pytest_cache .hypothesis
