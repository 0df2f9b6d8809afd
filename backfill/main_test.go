package backfill_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

var client *mongo.Client

// TestMain runs the tests against one embedded FerretDB (a process of its own under make
// test: testenv.StartMongo), or, with TANDEM_BACKFILL_CHILD set,
// acts as a backfill process of the crash tests (see child_test.go).
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_BACKFILL_CHILD") != "" {
		os.Exit(childMain())
	}
	dir, err := os.MkdirTemp("", "tandem-backfill-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "making the test server's folder:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err = testenv.StartMongo(ctx, dir, "")
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting embedded FerretDB:", err)
		os.Exit(1)
	}
	serverURI = srv.URI()
	if client, err = mongo.Connect(options.Client().ApplyURI(serverURI)); err != nil {
		srv.Stop()
		fmt.Fprintln(os.Stderr, "connecting to embedded FerretDB:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = client.Disconnect(context.Background())
	if motoServer != nil {
		motoServer.Stop()
	}
	srv.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// srv is the package's test server.
var srv *testenv.Mongo

// serverURI is the embedded FerretDB's connection string.
var serverURI string

var seq atomic.Int64

// env is one test's source, target, catalog, spec and converge engine.
type env struct {
	db        string
	src, dst  *mongo.Collection
	old, new  *adapters.MongoStore
	cat       *catalog.Catalog
	spec      *transform.Spec
	engine    *shadow.Engine
	migration string
}

const specTmpl = `name: %s
source: {mongodb: {uri: "%s", database: %s, collection: users}}
target: {mongodb: {uri: "%s", database: %s, collection: users_v2}}
indexes:
  - {keys: {profile.name: 1}}
  - {name: by_n, keys: {n: -1}, sparse: true}
forward:
  - rename: {from: name, to: profile.name}
  - set: {path: schema, value: 2}
%s`

// newEnv makes a database of its own; extra adds forward steps to the spec.
func newEnv(t testing.TB, extra string) *env {
	t.Helper()
	n := seq.Add(1)
	e, err := openEnv(fmt.Sprintf("bf_%d_%d", os.Getpid(), n), fmt.Sprintf("m%d", n), extra)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = client.Database(e.db).Drop(context.Background())
		_ = client.Database(e.db + "_meta").Drop(context.Background())
	})
	return e
}

// openEnv opens the stores, catalog, spec and engine of database db.
func openEnv(db, migration, extra string) (*env, error) {
	ctx := context.Background()
	e := &env{db: db, migration: migration}
	d := client.Database(e.db)
	e.src, e.dst = d.Collection("users"), d.Collection("users_v2")
	e.old, e.new = adapters.NewMongoStore(e.src), adapters.NewMongoStore(e.dst)
	var err error
	if e.cat, err = catalog.Open(ctx, client, catalog.WithDatabase(e.db+"_meta")); err != nil {
		return nil, err
	}
	if e.spec, err = transform.Parse("spec.yaml", []byte(fmt.Sprintf(specTmpl, e.migration, "mongodb://h/", e.db, "mongodb://h/", e.db, extra))); err != nil {
		return nil, err
	}
	e.engine, err = shadow.NewEngine(shadow.Config{
		Migration: e.migration, SpecVersion: e.spec.Version, Old: e.old, New: e.new,
		Forward: e.spec.Forward, Reverse: e.spec.Reverse, DeadLetters: e.cat, Log: quiet(),
	})
	return e, err
}

func quiet() *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// config returns a backfill config for small, fast tests on FerretDB.
func (e *env) config() backfill.Config {
	return backfill.Config{
		Migration: e.migration, Spec: e.spec, Old: e.old, New: e.new, Catalog: e.cat,
		Reconverge: func(ctx context.Context, k adapters.Key) error {
			_, err := e.engine.Converge(ctx, k, shadow.Forward)
			return err
		},
		Workers: 3, Partitions: 6, Batch: 50, Chunk: 25, Lease: testLease, Poll: 100 * time.Millisecond,
		MaxLatency: 10 * time.Second, // a loaded test machine is no strained target
		Log:        quiet(),
	}
}

// seed inserts n documents with string keys u00000…, 25 per command.
func (e *env) seed(t testing.TB, n int) {
	t.Helper()
	docs := make([]any, 0, n)
	for i := range n {
		docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("u%05d", i)}, {Key: "name", Value: fmt.Sprintf("user %d", i)}, {Key: "n", Value: int32(i)}})
	}
	e.insert(t, docs)
}

func (e *env) insert(t testing.TB, docs []any) {
	t.Helper()
	for start := 0; start < len(docs); start += 200 {
		_, err := e.src.InsertMany(context.Background(), docs[start:min(start+200, len(docs))])
		require.NoError(t, err)
	}
}

// checkCopy compares source and target fully: every source document's transform is in the
// target, and the target holds nothing else; keys in skip are left out on both sides.
func (e *env) checkCopy(t testing.TB, skip ...string) {
	t.Helper()
	ctx := context.Background()
	want := map[string]bson.D{}
	require.NoError(t, e.old.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{}, func(docs []bson.D) error {
		for _, d := range docs {
			k, err := e.old.KeyOf(d)
			require.NoError(t, err)
			out, err := e.spec.Forward(d)
			require.NoError(t, err)
			norm, err := e.new.Normalize(out)
			require.NoError(t, err)
			want[adapters.KeyString(k)] = norm
		}
		return nil
	}))
	got := map[string]bson.D{}
	require.NoError(t, e.new.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{}, func(docs []bson.D) error {
		for _, d := range docs {
			k, err := e.new.KeyOf(d)
			require.NoError(t, err)
			got[adapters.KeyString(k)] = d
		}
		return nil
	}))
	for _, s := range skip {
		delete(want, s)
		delete(got, s)
	}
	var missing, extra, differ []string
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case !transform.Equal(w, g):
			differ = append(differ, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(differ)
	assert.Empty(t, missing, "missing from the target")
	assert.Empty(t, extra, "only in the target")
	assert.Empty(t, differ, "differing")
	assert.Equal(t, len(want), len(got))
}

func count(t testing.TB, c *mongo.Collection) int64 {
	t.Helper()
	n, err := c.CountDocuments(context.Background(), bson.D{})
	require.NoError(t, err)
	return n
}

// motoServer is the binary's moto, started by the first DynamoDB test.
var motoServer *testenv.Moto
