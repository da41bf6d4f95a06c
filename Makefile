# Conveniences over scripts/ (which work without make on a fresh machine). All need root.
.PHONY: setup up down test unit lint bench clean

setup:
	scripts/setup.sh

up:
	scripts/quickstart.sh

down:
	.venv/bin/kubesim down --all

test:
	scripts/test.sh

unit:
	.venv/bin/python -m pytest tests/unit

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup
	@# as modules (bench/dns.py would hide the dns package from a script's sys.path); helpers have no main
	@for b in bench/*.py; do grep -q '__main__' $$b || continue; echo "== $$b"; \
		.venv/bin/python -m bench.$$(basename $$b .py) || exit 1; done

clean:
	.venv/bin/kubesim clean
