# Two commands on a fresh Debian machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test system install clean docs bench

# The demo intranet keeps its content in memory, so it runs as one worker.
run: $(STAMP)
	PYTHONPATH=contrib/demo $(BIN)/rulecast serve --app intranet:app --workers 1

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

install: $(STAMP)

# Benchmarks (not part of make test): rules, the suite against Flask-SocketIO, then
# targeted publish and events against it, over HTTP and rulecast's service sockets
# (docs/performance.md; about 35 minutes on 2 cores).
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/suite.py
	$(BIN)/python bench/targeted.py --batch 10 --workers 2 --transport http,ws

# The documentation site in docs/_build/html; warnings are errors (a broken link fails).
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# Debian packages the build or the tests need, installed only when missing:
# nanomsg for the workers' bus, redis-server and chromium for the tests.
system:
	@missing=""; \
	[ -f /usr/include/nanomsg/nn.h ] || missing="$$missing libnanomsg-dev"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

$(STAMP): setup.py | system
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test,docs]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
