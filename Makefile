# Tributary: two commands on a fresh machine.
#   make demo   sets everything up, then runs the whole market end to end
#   make test   sets everything up, then runs the test suite
# Both are idempotent: setup steps are skipped when their stamp is newer than their inputs.

PY      := .venv/bin/python
PYTEST  := .venv/bin/pytest
STAMPS  := .venv/.installed node_modules/.installed tools/ipfs/node_modules/.installed .cache/riscv64/.installed

.PHONY: setup demo test bench clean-state riscv

setup: $(STAMPS)

.venv/.installed: pyproject.toml constraints.txt scripts/setup-python.sh
	bash scripts/setup-python.sh
	touch $@

node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund  # npm ci trips on anvil's optional per-platform packages
	touch $@

tools/ipfs/node_modules/.installed: tools/ipfs/package.json tools/ipfs/package-lock.json
	cd tools/ipfs && npm install --no-audit --no-fund
	touch $@

.cache/riscv64/.installed: .venv/.installed scripts/riscv-rootfs.sh docker/backend-packages.txt $(wildcard docker/shims/*/*)
	bash scripts/riscv-rootfs.sh .cache/riscv64
	touch $@

riscv: .cache/riscv64/.installed

demo: setup
	$(PY) -m client demo

test: setup
	$(PYTEST)

bench: setup
	$(PY) -m bench

clean-state:
	rm -rf .run
