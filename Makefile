# Set-up and everyday commands. `make demo` and `make test` are the README's two commands.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install demo-data clean

demo: install
	$(VENV)/bin/adapter-tui

test: install
	$(PY) -m pytest

# The edit loop: everything but the end-to-end tests that train or spawn processes.
test-fast: install
	$(PY) -m pytest -m "not slow" -q

install: $(STAMP)

# torch first, pinned to the CPU wheel this machine carries; a bare `torch` requirement in a
# fresh venv would pull a multi-GB CUDA build. pyproject keeps `torch>=2.4` for users.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

demo-data: install
	test -f runs/datasets/demo/train/index.json || $(VENV)/bin/adapter-engine synth runs/datasets/demo

clean:
	rm -rf $(VENV) *.egg-info
