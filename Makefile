# plantgate — every target installs what it needs first.
NPM_STAMP := node_modules/.install-stamp

.PHONY: install build test demo bench lint clean

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: $(NPM_STAMP)

build: $(NPM_STAMP)
	npm run build

# Builds first: the end-to-end tests run the real `plantgate` CLI from dist/.
test: build
	npx vitest run

demo: build
	node dist/src/cli/main.js demo

bench: build
	node dist/test/bench/throughput.js $(if $(QUICK),--quick,)

lint: $(NPM_STAMP)
	npm run proto
	npx tsc -p tsconfig.json --noEmit

clean:
	rm -rf dist
