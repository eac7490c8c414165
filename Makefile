# flowscope — the two promises: `make demo` and `make test`, from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FLOWSCOPE := $(VENV)/bin/flowscope
DEMO := build/demo

.PHONY: setup demo test system-deps bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Test tools from Debian when we are root and they are missing; elsewhere those tests skip.
system-deps:
	@if [ "$$(id -u)" = 0 ] && ! command -v tshark >/dev/null 2>&1; then \
		echo "installing tshark (tests compare against it)"; \
		apt-get update -qq >/dev/null 2>&1 || true; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null 2>&1 || \
		echo "could not install tshark; the differential tests will skip"; \
	fi

demo: setup
	$(PY) bench/make_capture.py --frames 20000 --loss 0.002 -o $(DEMO)/mirror.pcap
	$(FLOWSCOPE) mirrors $(DEMO)/mirror.pcap
	$(FLOWSCOPE) packets $(DEMO)/mirror.pcap --limit 8
	$(FLOWSCOPE) decap $(DEMO)/mirror.pcap -o $(DEMO)/inner.pcapng --restore-timestamps
	@echo "inner frames written to $(DEMO)/inner.pcapng (open it with Wireshark)"

test: setup system-deps
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) build bench/out
