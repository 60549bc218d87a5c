# plantgate — every target installs what it needs first.
NPM_STAMP := node_modules/.install-stamp

.PHONY: install build test test-unit test-shuffle test-deps demo bench soak lint clean

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NPM_STAMP)

build: $(NPM_STAMP)
	npm run build

# Debian's nats-server, for the JetStream sink tests, and Debian's chromium, for the console's
# browser tests (test/e2e/console-browser.test.ts; playwright-core drives it, never downloads one):
# installed when missing and we may.
test-deps:
	@command -v nats-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; \
	  else echo "nats-server is missing: sudo apt-get install nats-server" >&2; exit 1; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing: sudo apt-get install chromium" >&2; exit 1; fi; }

# Builds first: the end-to-end tests run the real `plantgate` CLI from dist/.
test: build test-deps
	npx vitest run

# The fast loop: unit tests only (no build, no sockets to other processes, no system packages).
test-unit: $(NPM_STAMP)
	npx vitest run test/unit

# Every case must pass on its own, in any order: runs the cases of each file (and the files) in a
# shuffled order. SEED=n repeats an order; FILES=... narrows it (make test-shuffle SEED=7 FILES=test/integration).
SEED ?= $(shell date +%s)
test-shuffle: build test-deps
	@echo "shuffle seed $(SEED)"
	npx vitest run $(FILES) --sequence.shuffle --sequence.seed=$(SEED)

demo: build
	node dist/src/cli/main.js demo

bench: build
	@date +%s > dist/.bench-started
	node dist/test/bench/throughput.js $(if $(QUICK),--quick,)
	node dist/test/bench/policy.js $(if $(QUICK),--quick,)
	node dist/test/bench/enforcement.js $(if $(QUICK),--quick,)
	node dist/test/bench/token.js $(if $(QUICK),--quick,)
	node dist/test/bench/sim.js $(if $(QUICK),--quick,)
	node dist/test/bench/audit.js $(if $(QUICK),--quick,)
	node dist/test/bench/collector.js $(if $(QUICK),--quick,)
	node dist/test/bench/opcua.js $(if $(QUICK),--quick,)
	node dist/test/bench/mcp.js $(if $(QUICK),--quick,)
	node dist/test/bench/footprint.js $(if $(QUICK),--quick,)
	node dist/test/bench/replay.js $(if $(QUICK),--quick,)
	@echo "make bench$(if $(QUICK), QUICK=1,) took $$(( $$(date +%s) - $$(cat dist/.bench-started) )) s; load average now $$(cut -d' ' -f1-3 /proc/loadavg)"

# The gateway's memory under connection churn: 100,000 mutual-TLS connections opened and closed
# (QUICK=1: 10,000), RSS printed every 10,000 (1,000); fails when RSS after the churn and an idle wait is
# more than 10 % above the idle baseline (docs/deployment.md, Memory).
soak: build
	node dist/test/bench/soak.js $(if $(QUICK),--quick,)

lint: $(NPM_STAMP)
	npm run proto
	npx tsc -p tsconfig.json --noEmit

clean:
	rm -rf dist
