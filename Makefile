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
	@for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

clean:
	.venv/bin/kubesim clean
