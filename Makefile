# tandem — `make run` starts the embedded demo, `make test` installs what the tests need
# (into ignored folders of this repository) and runs them all.

GO      ?= go
PYTHON  ?= python3
NPM     ?= npm
VENV    := .venv
BIN     := bin/tandem

# The real-client tests (pymongo, the Node.js driver) fail instead of skipping under make test.
export TANDEM_REQUIRE_CLIENTS := 1
export TANDEM_PYTHON := $(CURDIR)/$(VENV)/bin/python
export TANDEM_NODE_MODULES := $(CURDIR)/clients/node_modules
# The Kafka integration tests (a real broker, testenv.StartKafka) fail instead of skipping too.
KAFKA   := .cache/kafka
export TANDEM_KAFKA_LIB := $(CURDIR)/$(KAFKA)/lib
# The HTML report's browser test (report/chromium_test.go) fails instead of skipping too.
export TANDEM_REQUIRE_CHROMIUM := 1
# The change-stream tests run against mongo-java-server (testenv/mongojava), installed here; they
# fail instead of skipping too (TANDEM_REQUIRE_CLIENTS).
MONGOJAVA := .cache/mongojava
export TANDEM_MONGOJAVA := $(CURDIR)/$(MONGOJAVA)

# The store sizes of the verification memory benchmark (BenchmarkFullPassMemory), and its
# partitions (1 needs no split keys, which FerretDB finds by sorting the whole collection).
VERIFY_MEM_SIZES ?= 20000,100000
VERIFY_MEM_PARTITIONS ?= 4

# The Prometheus rule tests (deploy_test.go) run promtool from Debian's prometheus package,
# extracted here by the promtool target; they fail instead of skipping too.
PROMETHEUS := .cache/prometheus
export TANDEM_PROMTOOL := $(CURDIR)/$(PROMETHEUS)/usr/bin/promtool

# The tests' MongoDB, embedded FerretDB, runs as a process of its own built without the race
# detector (testenv/ferretdb): inside a -race test binary its SQLite engine is ten times slower.
FERRETDB_BIN := .cache/bin/ferretdb
export TANDEM_FERRETDB_BIN := $(CURDIR)/$(FERRETDB_BIN)

.PHONY: all build run test test-go fuzz soak bench lint screenshot clients kafka mongojava chromium ferretdb postgresql promtool clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tandem

## run: the demo — embedded FerretDB, the proxy and the admin listener; Ctrl-C stops it.
run: build
	./$(BIN) demo --seed 100

## test: every test, with the race detector, plus a short fuzzing run of the frame decoder; then
## it fails if a server the tests started from this repository (a Kafka broker on the jars of
## .cache/kafka, moto from .venv) still runs. The kernel kills those when their test binary
## ends (PR_SET_PDEATHSIG), so the check waits up to 3 s for the last to go.
test: clients kafka mongojava chromium ferretdb promtool test-go fuzz
	@for i in 1 2 3 4; do \
		left=$$(pgrep -af -- '$(CURDIR)/(\.cache/bin/ferretdb|\.cache/kafka/lib|\.cache/mongojava/classes|\.venv/bin/python -m moto\.server)' || true); \
		[ -z "$$left" ] && exit 0; [ $$i -lt 4 ] && sleep 1; \
	done; echo "make test: processes left behind by the tests:" >&2; echo "$$left" >&2; exit 1

## ferretdb: the tests' FerretDB server (go build is incremental, so this is quick when current).
ferretdb:
	$(GO) build -o $(FERRETDB_BIN) ./testenv/ferretdb

test-go:
	$(GO) test -race -count=1 -timeout 30m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 20s ./proxy

## soak: the randomized convergence test (cmd/tandem TestConvergenceUnderKills) with 1,000
## seeds instead of make test's 50, on mongo-java-server: about an hour on 2 cores (3.7 s a seed
## measured over 150; docs/cdc.md, Tests). One seed again: TANDEM_CONVERGE_SEED=N go test -race
## -run TestConvergenceUnderKills ./cmd/tandem.
soak: mongojava ferretdb
	TANDEM_CONVERGE_SEEDS=1000 $(GO) test -race -count=1 -timeout 3h -run '^TestConvergenceUnderKills$$' ./cmd/tandem

## bench: every benchmark, in this order: the go test benchmarks of proxy, transform and adapters,
## the proxy benchmark (direct vs raw forwarder vs tandem), the converge benchmark (converge vs
## raw copy loops, MongoDB and DynamoDB on moto from .venv, installed here if missing), the phase
## benchmark (client latency by migration phase, rollback propagation), the backfill benchmark,
## the journal benchmark (converge throughput with 1 and 2 journal worker processes, on the
## Apache Kafka broker of .cache/kafka), the change-stream benchmark (the tailer's apply rate
## against a raw loop, and its lag under a steady 500 writes/s, on mongo-java-server of
## .cache/mongojava) and verification's full pass against a raw dual scan (the go test
## benchmark, MongoDB → MongoDB; then bench/verifybench, MongoDB → DynamoDB on moto and MongoDB →
## MongoDB, against raw loops that read both stores the same way, in alternating rounds), and
## the memory of a full pass at the store sizes VERIFY_MEM_SIZES (about 10 min at the default;
## `make bench VERIFY_MEM_SIZES=100000,300000,1000000 VERIFY_MEM_PARTITIONS=1` for the big
## ones, about 15 min on 2 cores; with 4 partitions FerretDB takes hours to plan 1,000,000).
## Results and the commands behind them: BENCHMARKS.md.
##
## The backfill benchmark runs FerretDB on a private PostgreSQL cluster (package embedmongo,
## PostgreSQL's initdb and pg_ctl, installed by the postgresql target when missing), in a child
## process. FerretDB reads the whole collection for each of the backfill's range queries, so
## its time grows with the square of the size; the sizes and the bound on its time are
## variables, e.g. make bench BACKFILL_DOCS=10000 BACKFILL_RSS_DOCS=1000,5000,10000 BACKFILL_TIMEOUT=2h
BACKFILL_DOCS     ?= 2000
BACKFILL_RSS_DOCS ?= 1000,5000
BACKFILL_TIMEOUT  ?= 30m
bench: $(VENV)/.installed kafka mongojava postgresql
	$(GO) test -run '^$$' -bench . -benchmem ./proxy ./transform ./adapters
	$(GO) run ./bench/proxybench
	$(GO) run ./bench/convergebench
	$(GO) run ./bench/phasebench
	$(GO) run ./bench/backfillbench -store postgresql -docs $(BACKFILL_DOCS) -rss-docs $(BACKFILL_RSS_DOCS) -timeout $(BACKFILL_TIMEOUT)
	$(GO) run ./bench/journalbench
	$(GO) run ./bench/cdcbench
	$(GO) test -run '^$$' -bench 'BenchmarkFullPass$$' -benchtime 3x ./verify
	$(GO) run ./bench/verifybench -rounds 5
	TANDEM_BENCH_VERIFY_SIZES=$(VERIFY_MEM_SIZES) TANDEM_BENCH_VERIFY_PARTITIONS=$(VERIFY_MEM_PARTITIONS) $(GO) test -run '^$$' -bench BenchmarkFullPassMemory -benchtime 1x -timeout 3h ./verify

## screenshot: the README's picture of the dashboard (docs/img/dashboard.png), taken by the
## dashboard's browser test (admin/chromium_test.go) in headless Chromium.
screenshot: ferretdb chromium
	TANDEM_ARTIFACTS=$(CURDIR)/.cache/artifacts $(GO) test -count=1 -run '^TestDashboardInChromium$$' ./admin
	cp .cache/artifacts/dashboard.png docs/img/dashboard.png

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## clients: pymongo in .venv and the Node.js driver in clients/node_modules, installed once.
clients: $(VENV)/.installed clients/node_modules/.installed

$(VENV)/.installed: clients/requirements.txt testenv/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r clients/requirements.txt -r testenv/requirements.txt
	touch $@

clients/node_modules/.installed: clients/package.json clients/package-lock.json
	cd clients && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

## kafka: the jars of an Apache Kafka broker (testenv/kafka/pom.xml) in .cache/kafka/lib, fetched
## by mvn once (again only when the pom changes); the integration tests run it in KRaft mode.
kafka:
	sh testenv/kafka/install.sh $(KAFKA)

## chromium: Debian's chromium for the HTML report's headless test, installed with apt-get
## when missing (the one system package make test installs; it needs root, as on CI).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }
	@command -v chromium >/dev/null 2>&1 || { echo "make chromium: chromium could not be installed" >&2; exit 1; }

## postgresql: PostgreSQL's initdb and pg_ctl (Debian's postgresql), for the backfill
## benchmark's FerretDB; installed with apt-get when missing (it needs root, as on CI).
postgresql:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; }
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "make postgresql: PostgreSQL's initdb could not be installed" >&2; exit 1; }

## mongojava: mongo-java-server's jars (testenv/mongojava/pom.xml) in .cache/mongojava/lib and its
## launcher, compiled with javac, in .cache/mongojava/classes; again only when either changes.
mongojava:
	sh testenv/mongojava/install.sh $(MONGOJAVA)

## promtool: Prometheus' promtool (checks and unit-tests deploy/prometheus's rules), taken from
## Debian's prometheus package (apt-get download needs no root; 19 MB) and kept alone in
## .cache/prometheus/usr/bin; again only when it is missing. apt-get update runs first when the
## package lists lack it (that needs root, as on CI).
promtool: $(PROMETHEUS)/usr/bin/promtool

$(PROMETHEUS)/usr/bin/promtool:
	rm -rf $(PROMETHEUS).tmp && mkdir -p $(PROMETHEUS).tmp
	cd $(PROMETHEUS).tmp && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; }
	dpkg-deb -x $(PROMETHEUS).tmp/prometheus_*.deb $(PROMETHEUS).tmp/root
	mkdir -p $(PROMETHEUS)/usr/bin
	mv $(PROMETHEUS).tmp/root/usr/bin/promtool $@.new && mv $@.new $@
	rm -rf $(PROMETHEUS).tmp
	$@ --version 2>&1 | head -1

clean:
	rm -rf bin $(VENV) clients/node_modules $(KAFKA) $(MONGOJAVA) $(PROMETHEUS)
