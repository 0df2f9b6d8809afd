package cdc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// The catalog implements the worker's LagReporter.
var _ cdc.LagReporter = (*catalog.Catalog)(nil)

// waitLimit bounds every wait of these tests: a limit for a hung test, not a timing assertion.
const waitLimit = 90 * time.Second

// client is a client of the binary's FerretDB: the old store, new stores and catalogs.
var client *mongo.Client

// TestMain runs the tests against one embedded FerretDB, or, with TANDEM_CDC_CHILD set, acts
// as a tailer process of the crash test (see changestream_crash_test.go).
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_CDC_CHILD") != "" {
		os.Exit(childMain())
	}
	testenv.MongoMain(m, &client, stopKafka, stopMongoJava)
}

const spec = `name: users-test
source:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users}
target:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users_v2}
forward:
  - rename: {from: name, to: profile.name}
  - convert: {path: age, from: int32, to: int64, on_error: fail}
  - set: {path: v, value: 2}
reverse:
  - drop: {path: v}
  - convert: {path: age, from: int64, to: int32, on_error: keep}
  - rename: {from: profile.name, to: name}
`

var seq atomic.Int64

// fixture is one migration "users-test" from db.users to a new store, with its catalog, and a
// journal on a topic of its own on the Kafka of seeds (see onEachKafka).
type fixture struct {
	db      *mongo.Database
	old     *adapters.MongoStore
	new     *adapters.MongoStore
	cat     *catalog.Catalog
	spec    *transform.Spec
	engine  *shadow.Engine
	journal *adapters.KafkaJournal
	reg     *prometheus.Registry
	log     *slog.Logger
}

// newFixture builds the fixture; newColl is the new store's collection (nil: db.users_v2 on
// the binary's FerretDB).
func newFixture(t *testing.T, seeds []string, newColl *mongo.Collection) *fixture {
	t.Helper()
	return newLoggedFixture(t, seeds, newColl, nil)
}

// newLoggedFixture is newFixture with log as the logger of the engine, the journal and the
// worker (nil: discarded, or the test's log with -v).
func newLoggedFixture(t *testing.T, seeds []string, newColl *mongo.Collection, log *slog.Logger) *fixture {
	t.Helper()
	ctx := context.Background()
	n := seq.Add(1)
	f := &fixture{db: client.Database(fmt.Sprintf("cdc_test_%d", n)), reg: prometheus.NewRegistry(), log: log}
	switch {
	case f.log != nil:
	case testing.Verbose():
		f.log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		f.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t.Cleanup(func() {
		_ = f.db.Drop(context.Background())
		_ = client.Database(f.db.Name() + "_meta").Drop(context.Background())
	})
	if newColl == nil {
		newColl = f.db.Collection("users_v2")
	}
	f.old, f.new = adapters.NewMongoStore(f.db.Collection("users")), adapters.NewMongoStore(newColl)
	var err error
	f.cat, err = catalog.Open(ctx, client, catalog.WithDatabase(f.db.Name()+"_meta"))
	require.NoError(t, err)
	f.spec, err = transform.Parse("users-test.yaml", []byte(spec))
	require.NoError(t, err)
	f.engine, err = shadow.NewEngine(shadow.Config{
		Migration: "users-test", SpecVersion: f.spec.Version, Old: f.old, New: f.new,
		Forward: f.spec.Forward, Reverse: f.spec.Reverse, DeadLetters: f.cat, Log: f.log,
	})
	require.NoError(t, err)

	f.journal, err = adapters.NewKafkaJournal(adapters.KafkaJournalConfig{
		Brokers: seeds,
		Topic:   fmt.Sprintf("cdc-test-%d", n), // unique in the binary: a real broker is shared
		Options: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond),
			kgo.MetadataMinAge(250 * time.Millisecond)},
		Logger:   f.log,
		Metrics:  adapters.NewJournalMetrics(f.reg),
		RetryMin: 10 * time.Millisecond,
		RetryMax: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(f.journal.Close)
	require.NoError(t, f.journal.EnsureTopic(ctx, 3, 1))
	return f
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// run starts a worker until the test ends.
func (f *fixture) run(t *testing.T, cfg cdc.JournalWorkerConfig) {
	t.Helper()
	cfg.Journal = f.journal
	if cfg.Engines == nil {
		cfg.Engines = cdc.EngineMap(map[string]*shadow.Engine{"users-test": f.engine})
	}
	cfg.LagReporter = f.cat
	cfg.LagEvery = 50 * time.Millisecond
	cfg.Metrics = cdc.NewWorkerMetrics(f.reg)
	cfg.Logger = f.log
	w, err := cdc.NewJournalWorker(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "Run after its context ended")
		case <-time.After(waitLimit):
			t.Error("Run did not return after its context ended")
		}
	})
}

func user(id string, age any) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: "N " + id}, {Key: "age", Value: age}}
}

func keyed(migration string, key adapters.Key) adapters.JournalEntry {
	return adapters.JournalEntry{Migration: migration, Key: key, Namespace: "d.users", Op: "update", Reason: "converge_failed", At: time.Now()}
}

// eventually polls cond every 25ms until it holds, or fails the test after waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(limit) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// converged reports whether store holds exactly the transform of old's document for every key
// (nothing where old has nothing), reading both directly.
func (f *fixture) converged(t *testing.T, store *adapters.MongoStore, keys ...string) bool {
	t.Helper()
	ctx := context.Background()
	ks := make([]adapters.Key, len(keys))
	for i, k := range keys {
		ks[i] = k
	}
	src, err := f.old.BatchGet(ctx, ks)
	require.NoError(t, err)
	dst, err := store.BatchGet(ctx, ks)
	if err != nil {
		return false // the new store may be starting
	}
	for _, k := range ks {
		ksr := adapters.KeyString(k)
		s, inOld := src[ksr]
		d, inNew := dst[ksr]
		if !inOld {
			if inNew {
				return false
			}
			continue
		}
		if !inNew {
			return false
		}
		want, err := f.spec.Forward(s)
		require.NoError(t, err)
		if !transform.Equal(want, d) {
			return false
		}
	}
	return true
}

// metric sums the samples of a counter or gauge family, those whose labels include labels.
func (f *fixture) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == k && lp.GetValue() == v
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// lagOf returns the worker's last reported lag of users-test in the catalog, if any.
func (f *fixture) lagOf(t *testing.T) (time.Duration, bool) {
	t.Helper()
	lags, err := f.cat.Lags(context.Background(), "users-test")
	require.NoError(t, err)
	for _, l := range lags {
		if l.Component == cdc.ComponentJournal {
			return l.Lag, true
		}
	}
	return 0, false
}

// TestJournalWorkerConverges appends keys of documents in old (and of one removed from old, one
// that cannot be transformed, an unkeyed write, and a migration nobody knows) and checks that
// the new store converges, by direct reads.
func TestJournalWorkerConverges(t *testing.T) { onEachKafka(t, testJournalWorkerConverges) }

func testJournalWorkerConverges(t *testing.T, seeds []string) {
	f := newFixture(t, seeds, nil)
	ctx := context.Background()
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("u%02d", i)
		keys = append(keys, k)
		require.NoError(t, f.old.Upsert(ctx, user(k, int32(20+i))))
	}
	// In new but no longer in old: the worker deletes it.
	require.NoError(t, f.new.Upsert(ctx, bson.D{{Key: "_id", Value: "gone"}, {Key: "v", Value: int32(2)}}))
	// Cannot be transformed: dead-lettered, and counted as done.
	require.NoError(t, f.old.Upsert(ctx, user("bad", "thirty")))
	// Matched only by the unkeyed write's filter.
	for _, k := range []string{"s1", "s2"} {
		require.NoError(t, f.old.Upsert(ctx, append(user(k, int32(50)), bson.E{Key: "status", Value: "vip"})))
	}
	filter, err := bson.Marshal(bson.D{{Key: "status", Value: "vip"}})
	require.NoError(t, err)

	f.run(t, cdc.JournalWorkerConfig{
		Migrations: []string{"users-test", "idle"},
		FilterKeys: func(ctx context.Context, migration, ns string, filter bson.Raw) ([]adapters.Key, error) {
			db, coll, ok := strings.Cut(ns, ".")
			if !ok || migration != "users-test" || db != "d" || coll != "users" {
				return nil, fmt.Errorf("%w: namespace %s of %s", cdc.ErrUnresolvable, ns, migration)
			}
			cur, err := f.db.Collection("users").Find(ctx, filter, options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}))
			if err != nil {
				return nil, err
			}
			var docs []struct {
				ID string `bson:"_id"`
			}
			if err := cur.All(ctx, &docs); err != nil {
				return nil, err
			}
			out := make([]adapters.Key, len(docs))
			for i, d := range docs {
				out[i] = d.ID
			}
			return out, nil
		},
	})

	var entries []adapters.JournalEntry
	for _, k := range keys {
		entries = append(entries, keyed("users-test", k))
	}
	entries = append(entries, keyed("users-test", "gone"), keyed("users-test", "bad"), keyed("users-test", keys[0]), keyed("ghost", "x"),
		adapters.JournalEntry{Migration: "users-test", Namespace: "d.users", Op: "update", Filter: filter, Reason: "unkeyed_write", At: time.Now()},
		adapters.JournalEntry{Migration: "users-test", Namespace: "d.other", Op: "delete", Filter: filter, Reason: "unkeyed_write", At: time.Now()})
	require.NoError(t, f.journal.Append(ctx, entries...))

	all := append(keys, "gone", "s1", "s2")
	eventually(t, "new to converge", func() bool { return f.converged(t, f.new, all...) })
	eventually(t, "the dead letter", func() bool {
		n, err := f.cat.CountDeadLetters(ctx, "users-test")
		require.NoError(t, err)
		return n == 1
	})
	_, err = f.new.Get(ctx, "bad")
	assert.ErrorIs(t, err, adapters.ErrNotFound, "a dead-lettered document is not written")
	eventually(t, "the skipped entries counted", func() bool {
		return f.metric(t, "tandem_journal_worker_keys_total", map[string]string{"migration": "ghost", "result": "skipped_unknown_migration"}) == 1 &&
			f.metric(t, "tandem_journal_worker_keys_total", map[string]string{"migration": "users-test", "result": "skipped_unkeyed"}) == 1
	})
	eventually(t, "every record committed", func() bool {
		n, err := f.journal.Lag(ctx, cdc.DefaultJournalGroup)
		require.NoError(t, err)
		return n == 0
	})
	assert.Zero(t, f.metric(t, "tandem_journal_worker_batch_failures_total", nil))
	eventually(t, "a lag of 0 in the catalog", func() bool { l, ok := f.lagOf(t); return ok && l == 0 })
	eventually(t, "a lag of 0 for the idle migration", func() bool {
		lags, err := f.cat.Lags(ctx, "idle")
		require.NoError(t, err)
		return len(lags) == 1 && lags[0].Component == cdc.ComponentJournal && lags[0].Lag == 0
	})
	ghostLags, err := f.cat.Lags(ctx, "ghost")
	require.NoError(t, err)
	assert.Empty(t, ghostLags, "no lag is reported for a migration the worker does not know")
	assert.GreaterOrEqual(t, f.metric(t, "tandem_journal_worker_keys_total", map[string]string{"result": "upserted"}), float64(len(keys)+2))
	assert.Equal(t, 1.0, f.metric(t, "tandem_journal_worker_keys_total", map[string]string{"result": "deleted"}))
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestJournalWorkerWaitsForTheNewStore stops the new store's FerretDB, appends keys, sees the
// worker fail and retry, restarts FerretDB on the same address and data folder, and checks that
// every key converges.
func TestJournalWorkerWaitsForTheNewStore(t *testing.T) {
	onEachKafka(t, testJournalWorkerWaitsForTheNewStore)
}

func testJournalWorkerWaitsForTheNewStore(t *testing.T, seeds []string) {
	ctx := context.Background()
	dir, addr := t.TempDir(), freeAddr(t)
	startNew := func() *embedmongo.Server {
		sctx, cancel := context.WithTimeout(ctx, waitLimit)
		defer cancel()
		s, err := embedmongo.Start(sctx, embedmongo.Options{Dir: dir, Addr: addr})
		require.NoError(t, err)
		return s
	}
	newSrv := startNew()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			newSrv.Stop()
		}
	})
	// Fail fast while the server is down, and notice quickly that it is back.
	newClient, err := mongo.Connect(options.Client().ApplyURI(newSrv.URI()).
		SetServerSelectionTimeout(300 * time.Millisecond).SetConnectTimeout(300 * time.Millisecond).
		SetHeartbeatInterval(500 * time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = newClient.Disconnect(context.Background()) })
	f := newFixture(t, seeds, newClient.Database("d").Collection("users_v2"))
	f.run(t, cdc.JournalWorkerConfig{})

	// While the new store is up, the worker converges.
	require.NoError(t, f.old.Upsert(ctx, user("before", int32(1))))
	require.NoError(t, f.journal.Append(ctx, keyed("users-test", "before")))
	eventually(t, "the first key", func() bool { return f.converged(t, f.new, "before") })

	newSrv.Stop()
	stopped = true
	var keys []string
	for i := range 20 {
		k := fmt.Sprintf("d%02d", i)
		keys = append(keys, k)
		require.NoError(t, f.old.Upsert(ctx, user(k, int32(i))))
		require.NoError(t, f.journal.Append(ctx, keyed("users-test", k)))
	}
	eventually(t, "the worker to fail and retry", func() bool {
		return f.metric(t, "tandem_journal_worker_batch_failures_total", map[string]string{"migration": "users-test"}) >= 3 &&
			f.metric(t, "tandem_journal_retries_total", map[string]string{"stage": "handle"}) >= 3
	})
	eventually(t, "a lag above 0 in the catalog while the store is down", func() bool { l, ok := f.lagOf(t); return ok && l > 0 })
	lagged, err := f.journal.Lag(ctx, cdc.DefaultJournalGroup)
	require.NoError(t, err)
	assert.Positive(t, lagged, "the keys wait in Kafka, uncommitted")

	newSrv = startNew()
	stopped = false
	eventually(t, "every key to converge after the restart", func() bool { return f.converged(t, f.new, keys...) })

	// Read back through a new client, straight from the restarted server.
	check, err := mongo.Connect(options.Client().ApplyURI(newSrv.URI()))
	require.NoError(t, err)
	defer func() { _ = check.Disconnect(context.Background()) }()
	assert.True(t, f.converged(t, adapters.NewMongoStore(check.Database("d").Collection("users_v2")), append(keys, "before")...))
	eventually(t, "every record committed", func() bool {
		n, err := f.journal.Lag(ctx, cdc.DefaultJournalGroup)
		require.NoError(t, err)
		return n == 0
	})
	eventually(t, "a lag of 0 in the catalog", func() bool { l, ok := f.lagOf(t); return ok && l == 0 })
}

func TestNewJournalWorkerChecksItsConfig(t *testing.T) {
	j, err := adapters.NewKafkaJournal(adapters.KafkaJournalConfig{Brokers: []string{"127.0.0.1:1"}})
	require.NoError(t, err)
	defer j.Close()
	engines := cdc.EngineMap(nil)
	for _, tc := range []struct {
		name string
		cfg  cdc.JournalWorkerConfig
		want string
	}{
		{"no journal", cdc.JournalWorkerConfig{Engines: engines}, "Journal is required"},
		{"no engines", cdc.JournalWorkerConfig{Journal: j}, "Engines is required"},
		{"negative lag interval", cdc.JournalWorkerConfig{Journal: j, Engines: engines, LagEvery: -time.Second}, "LagEvery is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cdc.NewJournalWorker(tc.cfg)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	_, err = engines(context.Background(), "nope")
	assert.ErrorIs(t, err, cdc.ErrUnknownMigration)
}
