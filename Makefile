# Quick start: `make demo` (sample corpus -> offline build -> demo model trained in two stages -> Table 1) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# Pin the CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[train,eval,test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/mv4all demo mv4all-demo

# The storyboard test opens its page in Debian's chromium: installed here when missing and we can (root + apt-get),
# never failing the target (the test then skips, saying why).
test: install
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && export DEBIAN_FRONTEND=noninteractive && \
		{ apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && \
		  apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || true
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/build.py

clean:
	rm -rf mv4all-demo .pytest_cache
