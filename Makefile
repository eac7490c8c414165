# flowscope — the two promises: `make demo` and `make test`, from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FLOWSCOPE := $(VENV)/bin/flowscope
DEMO := build/demo

.PHONY: setup demo test system-deps bench bench-live lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The packet path's kernels compiled ahead of time (flowscope/jit.py): no Numba import or
# kernel loading at run time (~0.4 s a command).  Rebuilt when a source changes; where it
# cannot be built (no C compiler), Numba compiles the kernels on first use as before.
KERNELS := src/flowscope/_kernels.json
$(KERNELS): $(VENV)/.installed $(shell find src/flowscope -name '*.py')
	@mkdir -p build/kernels
	$(PY) demo/make_incident.py -o build/kernels/incident.pcap > /dev/null
	$(PY) -m flowscope.jit_build build/kernels/incident.pcap || \
		echo "ahead-of-time kernels not built: Numba compiles them on first use"

setup: $(VENV)/.installed $(KERNELS)

# Test tools from Debian when we are root and they are missing; elsewhere those tests skip.
# tshark: the independent decoder; tcpdump, nftables, iproute2: real kernel TCP in namespaces;
# tcpreplay: captures replayed into the live collector.
system-deps:
	@missing=""; \
	for pair in tshark:tshark tcpdump:tcpdump nft:nftables ip:iproute2 tcpreplay:tcpreplay; do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing (tests use them)"; \
		apt-get update -qq >/dev/null 2>&1 || true; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null 2>&1 || \
		echo "could not install$$missing; the tests that need them will skip"; \
	fi

demo: setup
	$(PY) demo/make_incident.py -o $(DEMO)/incident.pcap
	$(FLOWSCOPE) sessions $(DEMO)/incident.pcap --limit 16
	$(FLOWSCOPE) sessions $(DEMO)/incident.pcap --interval 2s --format csv
	$(FLOWSCOPE) sessions $(DEMO)/incident.pcap --format zeek -o $(DEMO)/conn.log
	@echo "Zeek conn.log written to $(DEMO)/conn.log"
	$(PY) -m tests.flowlog_gen $(DEMO)/flows.log
	$(FLOWSCOPE) flowlogs analyze $(DEMO)/flows.log
	$(FLOWSCOPE) flowlogs analyze $(DEMO)/flows.log --interval 1m --by port --format csv
	$(FLOWSCOPE) match $(DEMO)/incident.pcap --preset tcp-rst --examples 3
	$(PY) bench/make_capture.py --frames 20000 --loss 0.002 -o $(DEMO)/mirror.pcap
	$(FLOWSCOPE) mirrors $(DEMO)/mirror.pcap
	$(FLOWSCOPE) packets $(DEMO)/mirror.pcap --limit 8
	$(FLOWSCOPE) decap $(DEMO)/mirror.pcap -o $(DEMO)/inner.pcapng --restore-timestamps
	@echo "inner frames written to $(DEMO)/inner.pcapng (open it with Wireshark)"

test: setup system-deps
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run.py
	$(PY) bench/grpc_throughput.py

# root: namespaces, a veth and tcpreplay into `flowscope listen`
bench-live: setup system-deps
	$(PY) bench/live_replay.py

lint: setup
	$(VENV)/bin/ruff check src tests bench demo
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) build bench/out
