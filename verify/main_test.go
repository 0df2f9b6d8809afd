package verify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

var client *mongo.Client

// serverURI is the embedded FerretDB's connection string, for child processes.
var serverURI string

// TestMain runs the tests against one embedded FerretDB, or acts as a child process: with
// TANDEM_VERIFY_CHILD set a verifier process of the crash tests (see child_test.go), with
// TANDEM_VERIFY_STORE the memory benchmark's store and with TANDEM_VERIFY_MEMCHILD its
// verifier (bench_memory_test.go).
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("TANDEM_VERIFY_CHILD") != "":
		os.Exit(childMain())
	case os.Getenv("TANDEM_VERIFY_STORE") != "":
		os.Exit(storeMain())
	case os.Getenv("TANDEM_VERIFY_MEMCHILD") != "":
		os.Exit(memChildMain())
	}
	dir, err := os.MkdirTemp("", "tandem-verify-ferretdb-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "making the test server's folder:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv, err := testenv.StartMongo(ctx, dir, "") // a process of its own under make test
	cancel()
	if err != nil {
		_ = os.RemoveAll(dir)
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
	srv.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const migration = "users-v2"

// fixture is the users-v2 example migration between two FerretDB collections, with a catalog.
type fixture struct {
	db       string
	old, new adapters.Store
	cat      *catalog.Catalog
	spec     *transform.Spec
}

var seq atomic.Int64

func newFixture(t testing.TB) *fixture {
	t.Helper()
	name := fmt.Sprintf("verify_test_%d_%d", os.Getpid(), seq.Add(1))
	f, err := openFixture(name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = client.Database(name).Drop(context.Background())
		_ = client.Database(name + "_meta").Drop(context.Background())
	})
	return f
}

// openFixture opens the stores and catalog of database db (a child process opens its
// parent's).
func openFixture(db string) (*fixture, error) { return openFixtureOn(client, db) }

// openFixtureOn opens the fixture of database db on client c.
func openFixtureOn(c *mongo.Client, db string) (*fixture, error) {
	cat, err := catalog.Open(context.Background(), c, catalog.WithDatabase(db+"_meta"))
	if err != nil {
		return nil, err
	}
	spec, err := transform.Load("../examples/users-v2.yaml")
	if err != nil {
		return nil, err
	}
	return &fixture{
		db:   db,
		old:  adapters.NewMongoStore(c.Database(db).Collection("users")),
		new:  adapters.NewMongoStore(c.Database(db).Collection("users_v2")),
		cat:  cat,
		spec: spec,
	}, nil
}

// config is a run over the fixture with small batches, so that every test crosses batches
// and partitions.
func (f *fixture) config() verify.Config {
	return verify.Config{
		Migration: migration, Old: f.old, New: f.new, Forward: f.spec.Forward,
		Catalog: f.cat, Partitions: 3, Batch: 7, Concurrency: 2,
	}
}

func userID(i int) string { return fmt.Sprintf("user-%06d", i) }

// user is a source document of examples/users-v2.yaml.
func user(i int) bson.D {
	return bson.D{
		{Key: "_id", Value: userID(i)},
		{Key: "name", Value: fmt.Sprintf("User %d", i)},
		{Key: "email", Value: fmt.Sprintf("user%d@example.com", i)},
		{Key: "age", Value: int32(18 + i%50)},
		{Key: "created", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Hour))},
	}
}

// seed writes users 0..n-1 to old and their transforms to new: a converged migration.
func (f *fixture) seed(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	var olds, news []adapters.WriteOp
	for i := range n {
		d := user(i)
		olds = append(olds, adapters.WriteOp{Key: userID(i), Doc: d})
		news = append(news, adapters.WriteOp{Key: userID(i), Doc: f.forward(t, d)})
	}
	if n > 0 {
		require.NoError(t, f.old.BulkWrite(ctx, olds))
		require.NoError(t, f.new.BulkWrite(ctx, news))
	}
}

func (f *fixture) forward(t *testing.T, d bson.D) bson.D {
	t.Helper()
	out, err := f.spec.Forward(d)
	require.NoError(t, err)
	return out
}

// write is a writer that converges: it writes old, then the transform to new (or deletes
// from both, old first), as the proxy does in the dual phase. Hooks call it on a run's
// goroutines, so it reports errors rather than stopping the test.
func (f *fixture) write(key string, doc bson.D) error {
	ctx := context.Background()
	if doc == nil {
		if err := f.old.Delete(ctx, key); err != nil {
			return err
		}
		return f.new.Delete(ctx, key)
	}
	out, err := f.spec.Forward(doc)
	if err != nil {
		return err
	}
	if err := f.old.Upsert(ctx, doc); err != nil {
		return err
	}
	return f.new.Upsert(ctx, out)
}

// convergeForward is a stand-in for shadow.Engine.Converge(ctx, key, shadow.Forward), which
// verify may not import: new gets the transform of old's document, or loses the key.
func (f *fixture) convergeForward(ctx context.Context, key adapters.Key) error {
	doc, err := f.old.Get(ctx, key)
	switch {
	case err == nil:
		out, err := f.spec.Forward(doc)
		if err != nil {
			return err
		}
		return f.new.Upsert(ctx, out)
	case errors.Is(err, adapters.ErrNotFound):
		return f.new.Delete(ctx, key)
	default:
		return err
	}
}

// newestSummary decodes the migration's newest verify report both as the verifier wrote it
// and as the cutover gate reads it.
func (f *fixture) newestSummary(t *testing.T) (catalog.VerifySummary, flags.VerifySummary) {
	t.Helper()
	reports, err := f.cat.Reports(context.Background(), migration, flags.ReportKindVerify, 1)
	require.NoError(t, err)
	require.Len(t, reports, 1)
	var mine catalog.VerifySummary
	require.NoError(t, json.Unmarshal([]byte(reports[0].Content), &mine))
	var gate flags.VerifySummary
	require.NoError(t, json.Unmarshal([]byte(reports[0].Content), &gate))
	return mine, gate
}
