# Tributary: two commands on a fresh machine.
#   make demo   sets up what the demo uses (Python venv + chain tools), then runs the whole market
#   make test   sets everything up (also the IPFS daemon and the riscv64 userland), then runs the tests
# Both are idempotent: setup steps are skipped when their stamp is newer than their inputs.
# Setup never changes a tracked file: npm installs with `npm ci` from the committed lockfiles.

PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest
NPM_CI  := npm ci --no-audit --no-fund --loglevel=error
VENV    := .venv/.installed
CHAIN   := node_modules/.installed
IPFS    := tools/ipfs/node_modules/.installed
RISCV   := .cache/riscv64/.installed
BROWSER := .cache/browser.installed

.PHONY: setup setup-all demo test bench clean-state riscv ipfs up browser

# what `make demo` and `tributary dev up` need
setup: $(VENV) $(CHAIN)
	@echo "ready: activate the environment with  . .venv/bin/activate  (then: tributary --help, tributary dev up)"

# what the whole test suite needs
setup-all: setup $(IPFS) $(RISCV) $(BROWSER)

$(VENV): pyproject.toml constraints.txt scripts/setup-python.sh
	bash scripts/setup-python.sh
	touch $@

$(CHAIN): package.json package-lock.json
	$(NPM_CI)
	touch $@

$(IPFS): tools/ipfs/package.json tools/ipfs/package-lock.json
	cd tools/ipfs && $(NPM_CI)
	touch $@

$(RISCV): $(VENV) scripts/riscv-rootfs.sh docker/backend-packages.txt $(wildcard docker/shims/*/*)
	bash scripts/riscv-rootfs.sh .cache/riscv64
	touch $@

# Debian's Chromium for the dashboard's real-browser tests (playwright drives it)
$(BROWSER): $(VENV) scripts/setup-browser.sh
	bash scripts/setup-browser.sh
	mkdir -p .cache && touch $@

ipfs: $(IPFS)
riscv: $(RISCV)
browser: $(BROWSER)

demo: setup
	$(PY) -m client demo

# a local market (chain + node + content store) until Ctrl-C; `make up ARGS=--ipfs` for IPFS
up: setup $(if $(findstring --ipfs,$(ARGS)),$(IPFS))
	$(PY) -m client dev up $(ARGS)

test: setup-all
	$(PYTEST)

bench: setup-all
	$(PY) -m bench

clean-state:
	rm -rf .run
