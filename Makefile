# `make run` and `make test` work on a fresh clone: both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: run test bench clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# compat mode: twistd finds plugins by scanning sys.path for twisted/plugins,
	# which the default editable import hook does not provide.
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

# On a terminal, `set -m` runs twistd in its own process group and hands it
# the terminal: Ctrl-C reaches only the daemon, which drains and exits 0,
# instead of also killing make (which would then report 130 whatever the
# daemon did).
run: $(STAMP)
	@[ ! -t 0 ] || set -m; $(VENV)/bin/twistd -n --pidfile= openclaw $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	$(PY) bench/gateway.py
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) build *.egg-info twisted/plugins/dropin.cache
