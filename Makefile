# The README's commands. `make install` sets everything up; `make run` runs the main job;
# `make test` installs (if needed) and runs the test suite.
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
TORCH     ?= torch==2.14.1 torchvision==0.29.1
SHAPE     ?= ../shared/data/modelnet10/modelnet10_pcd1024_test.h5

.PHONY: install system-deps run zeroshot notebooks test clean

# open3d needs libusb-1.0 at import time; the browser tests drive Debian's chromium (no browser
# download). Debian/Ubuntu only; skipped when present, or with a hint when not root.
APT_PKGS := $(if $(shell ldconfig -p 2>/dev/null | grep libusb-1.0.so.0),,libusb-1.0-0) $(if $(wildcard /usr/bin/chromium),,chromium)

system-deps:
	@if [ -n "$(strip $(APT_PKGS))" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages: $(APT_PKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	  else echo "please install: $(APT_PKGS) (e.g. sudo apt-get install $(APT_PKGS))"; fi; \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: system-deps $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	@# JupyterLab: no "Build recommended" dialog (open3d pulls in dash, whose old source extension asks for a
	@# build on every start; see notebooks/README.md). The venv's own config, so a plain `jupyter lab` gets it too.
	@mkdir -p $(VENV)/etc/jupyter/labconfig && cp notebooks/jupyter-config/labconfig/page_config.json $(VENV)/etc/jupyter/labconfig/
	@$(BIN)/clip2point info --brief

# The app: http://127.0.0.1:7860 (opens on an example shape; random weights, said on screen, when none are found).
run: install
	$(BIN)/python -m ui.app $(APP_ARGS)

# The main job without a browser: zero-shot on a real ModelNet10 test shape.
zeroshot: install
	$(BIN)/clip2point zeroshot "$(SHAPE)" --index 0 --up z --class-set modelnet10 --weights $${WEIGHTS:-random}

notebooks: install
	$(BIN)/jupyter lab notebooks/

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
