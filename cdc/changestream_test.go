package cdc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// The binary's mongo-java-server, started on first use and stopped by TestMain (stopMongoJava):
// the change-stream tests' old and new stores, one database per test.
var (
	mjOnce   sync.Once
	mjServer *testenv.MongoJava
	mjClient *mongo.Client
	mjErr    error
)

func mongoJava(tb testing.TB) *mongo.Client {
	tb.Helper()
	mjOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if mjServer, mjErr = testenv.StartMongoJava(ctx, testenv.MongoJavaOptions{}); mjErr != nil {
			return
		}
		mjClient, mjErr = mongo.Connect(options.Client().ApplyURI(mjServer.URI()))
	})
	testenv.SkipOrFailMongoJava(tb, mjErr)
	return mjClient
}

func stopMongoJava() {
	if mjClient != nil {
		_ = mjClient.Disconnect(context.Background())
	}
	if mjServer != nil {
		mjServer.Stop()
	}
}

// csFixture is one migration "users-test" from db.users to db.users_v2, both on
// mongo-java-server, with its catalog on the binary's FerretDB.
type csFixture struct {
	db       *mongo.Database
	oldColl  *mongo.Collection
	newColl  *mongo.Collection
	old, new *adapters.MongoStore
	cat      *catalog.Catalog
	spec     *transform.Spec
	engine   *shadow.Engine
	reg      *prometheus.Registry
	metrics  *cdc.TailerMetrics
	log      *slog.Logger
}

func newCSFixture(t testing.TB) *csFixture {
	t.Helper()
	return newCSFixtureOn(t, mongoJava(t))
}

// newCSFixtureOn is newCSFixture with the stores on mj's server.
func newCSFixtureOn(t testing.TB, mj *mongo.Client) *csFixture {
	t.Helper()
	ctx := context.Background()
	n := seq.Add(1)
	f := &csFixture{db: mj.Database(fmt.Sprintf("cs_test_%d", n)), reg: prometheus.NewRegistry()}
	f.metrics = cdc.NewTailerMetrics(f.reg)
	f.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if tt, ok := t.(*testing.T); ok && testing.Verbose() {
		f.log = slog.New(slog.NewTextHandler(testWriter{tt}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	meta := client.Database(fmt.Sprintf("cs_test_%d_meta", n))
	t.Cleanup(func() {
		_ = f.db.Drop(context.Background())
		_ = meta.Drop(context.Background())
	})
	f.oldColl, f.newColl = f.db.Collection("users"), f.db.Collection("users_v2")
	f.old, f.new = adapters.NewMongoStore(f.oldColl), adapters.NewMongoStore(f.newColl)
	var err error
	f.cat, err = catalog.Open(ctx, client, catalog.WithDatabase(meta.Name()))
	require.NoError(t, err)
	f.spec, err = transform.Parse("users-test.yaml", []byte(spec))
	require.NoError(t, err)
	f.engine, err = shadow.NewEngine(shadow.Config{
		Migration: "users-test", SpecVersion: f.spec.Version, Old: f.old, New: f.new,
		Forward: f.spec.Forward, Reverse: f.spec.Reverse, DeadLetters: f.cat, Log: f.log,
	})
	require.NoError(t, err)
	return f
}

// tailer builds the tailer of one direction over the collection's change stream.
func (f *csFixture) tailer(t testing.TB, dir shadow.Direction) *cdc.Tailer {
	t.Helper()
	coll := f.oldColl
	if dir == shadow.Reverse {
		coll = f.newColl
	}
	src, err := cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: coll, Poll: 20 * time.Millisecond, Logger: f.log})
	require.NoError(t, err)
	tl, err := cdc.NewTailer(cdc.TailerConfig{
		Migration: "users-test", Direction: dir, Source: src, Engine: f.engine, Checkpoints: f.cat,
		LagReporter: f.cat, LagEvery: 50 * time.Millisecond, Metrics: f.metrics, Logger: f.log,
	})
	require.NoError(t, err)
	return tl
}

// running is a tailer's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start prepares tl (its start position saved) and runs it until stop or the test's end.
func start(t *testing.T, tl *cdc.Tailer) *running {
	t.Helper()
	_, err := tl.Prepare(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- tl.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the run and returns what Run returned (nil once stopped before).
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

// wait returns what Run returned by itself, failing the test after waitLimit.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		close(r.done)
		return err
	case <-time.After(waitLimit):
		t.Fatal("Run did not stop by itself")
		return nil
	}
}

// allConverged reports whether dst holds exactly the transform (fn) of every document of src
// and nothing else, reading both collections whole.
func allConverged(t *testing.T, src, dst *mongo.Collection, fn func(bson.D) (bson.D, error)) (bool, string) {
	t.Helper()
	ctx := context.Background()
	want, got := readAll(t, src), readAll(t, dst)
	if len(want) != len(got) {
		return false, fmt.Sprintf("%d documents in %s, %d in %s", len(want), src.Name(), len(got), dst.Name())
	}
	_ = ctx
	for k, d := range want {
		w, err := fn(d)
		require.NoError(t, err)
		g, ok := got[k]
		if !ok {
			return false, fmt.Sprintf("%s missing from %s", k, dst.Name())
		}
		if !transform.Equal(w, g) {
			return false, fmt.Sprintf("%s differs: want %v, got %v", k, w, g)
		}
	}
	return true, ""
}

func readAll(t *testing.T, c *mongo.Collection) map[string]bson.D {
	t.Helper()
	cur, err := c.Find(context.Background(), bson.D{})
	require.NoError(t, err)
	var docs []bson.D
	require.NoError(t, cur.All(context.Background(), &docs))
	out := make(map[string]bson.D, len(docs))
	for _, d := range docs {
		out[adapters.KeyString(d[0].Value)] = d
	}
	return out
}

// eventuallyConverged waits until dst is the transform of src.
func eventuallyConverged(t *testing.T, src, dst *mongo.Collection, fn func(bson.D) (bson.D, error)) {
	t.Helper()
	var why string
	limit := time.Now().Add(waitLimit)
	for {
		ok, w := allConverged(t, src, dst, fn)
		if ok {
			return
		}
		why = w
		if time.Now().After(limit) {
			t.Fatalf("not converged after %s: %s", waitLimit, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeEveryKind makes every kind of write straight into coll (no proxy involved): insert,
// updateOne, replaceOne, findOneAndUpdate (plain and upsert), findOneAndReplace,
// findOneAndDelete, deleteOne, updateMany and deleteMany. doc builds a document of the
// collection's shape.
func writeEveryKind(t *testing.T, coll *mongo.Collection, doc func(id string, n int32) bson.D, field string) {
	t.Helper()
	ctx := context.Background()
	for i := range 6 {
		_, err := coll.InsertOne(ctx, doc(fmt.Sprintf("u%d", i), int32(20+i)))
		require.NoError(t, err)
	}
	set := func(v any) bson.D { return bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: v}}}} }
	id := func(s string) bson.D { return bson.D{{Key: "_id", Value: s}} }
	_, err := coll.UpdateOne(ctx, id("u0"), set("updated"))
	require.NoError(t, err)
	_, err = coll.ReplaceOne(ctx, id("u1"), doc("u1", 99)[1:])
	require.NoError(t, err)
	require.NoError(t, coll.FindOneAndUpdate(ctx, id("u2"), set("found and updated")).Err())
	require.NoError(t, coll.FindOneAndUpdate(ctx, id("u9"), set("upserted"), options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Err())
	require.NoError(t, coll.FindOneAndReplace(ctx, id("u3"), doc("u3", 77)[1:]).Err())
	require.NoError(t, coll.FindOneAndDelete(ctx, id("u4")).Err())
	_, err = coll.DeleteOne(ctx, id("u5"))
	require.NoError(t, err)
	_, err = coll.UpdateMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"u0", "u1"}}}}}, set("many"))
	require.NoError(t, err)
	for i := range 3 {
		_, err := coll.InsertOne(ctx, doc(fmt.Sprintf("gone%d", i), 1))
		require.NoError(t, err)
	}
	_, err = coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$regex", Value: "^gone"}}}})
	require.NoError(t, err)
}

func oldDoc(id string, age int32) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: "N " + id}, {Key: "age", Value: age}}
}

func newDoc(id string, age int32) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "profile", Value: bson.D{{Key: "name", Value: "N " + id}}},
		{Key: "age", Value: int64(age)}, {Key: "v", Value: int32(2)}}
}

// TestChangeStreamForward writes every kind of write straight into the old store and checks
// that the new store ends up the transform of old, through the change stream alone; then that
// the lag reaches 0 in the catalog and the checkpoint counts the changes.
func TestChangeStreamForward(t *testing.T) {
	f := newCSFixture(t)
	start(t, f.tailer(t, shadow.Forward))
	writeEveryKind(t, f.oldColl, oldDoc, "name")
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)

	eventually(t, "a lag of 0 in the catalog", func() bool {
		lags, err := f.cat.Lags(context.Background(), "users-test")
		require.NoError(t, err)
		for _, l := range lags {
			if l.Component == cdc.ComponentForward && l.Lag == 0 {
				return true
			}
		}
		return false
	})
	s, err := f.cat.CDCStream(context.Background(), "users-test", cdc.PathForward)
	require.NoError(t, err)
	// 6 inserts, 7 single-key writes, 2 of updateMany, 3 inserts and 3 deletes of deleteMany.
	eventually(t, "21 changes in the checkpoint", func() bool {
		s, err = f.cat.CDCStream(context.Background(), "users-test", cdc.PathForward)
		require.NoError(t, err)
		return s.Applied >= 21
	})
	assert.EqualValues(t, 21, s.Applied)
	assert.Equal(t, catalog.CDCRunning, s.State)
	assert.False(t, s.At.IsZero(), "the checkpoint's time of the newest change")
	for _, op := range []string{"insert", "update", "replace", "delete"} {
		assert.Positive(t, metric(t, f.reg, "tandem_cdc_changes_total", map[string]string{"op": op, "direction": "forward"}), op)
	}
}

// TestChangeStreamReverse writes every kind of write straight into the new store and checks
// that the old store ends up its reverse transform.
func TestChangeStreamReverse(t *testing.T) {
	f := newCSFixture(t)
	start(t, f.tailer(t, shadow.Reverse))
	writeEveryKind(t, f.newColl, newDoc, "profile.name")
	eventuallyConverged(t, f.newColl, f.oldColl, f.spec.Reverse)
	assert.Positive(t, metric(t, f.reg, "tandem_cdc_converged_total", map[string]string{"direction": "reverse", "result": "upserted"}))
}

// TestChangeStreamResumes stops the tailer, writes while it is stopped, and starts a new one
// (a restart): it resumes from the checkpoint and converges what was written meanwhile.
func TestChangeStreamResumes(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	r := start(t, f.tailer(t, shadow.Forward))
	for i := range 5 {
		_, err := f.oldColl.InsertOne(ctx, oldDoc(fmt.Sprintf("a%d", i), 30))
		require.NoError(t, err)
	}
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	eventually(t, "5 changes in the checkpoint", func() bool {
		s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
		require.NoError(t, err)
		return s.Applied == 5
	})
	require.NoError(t, r.stop(t))

	for i := range 5 {
		_, err := f.oldColl.InsertOne(ctx, oldDoc(fmt.Sprintf("b%d", i), 31))
		require.NoError(t, err)
	}
	_, err := f.oldColl.DeleteOne(ctx, bson.D{{Key: "_id", Value: "a0"}})
	require.NoError(t, err)
	ok, _ := allConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	require.False(t, ok, "converged while no tailer ran")

	start(t, f.tailer(t, shadow.Forward))
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	eventually(t, "11 changes in the checkpoint", func() bool {
		s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
		require.NoError(t, err)
		return s.Applied == 11 // not 16: the first five were not converged again
	})
}

// TestChangeStreamHistoryLost trims the server's oplog while the tailer is stopped: the next
// run fails with ErrHistoryLost, the catalog says history_lost with the resync command, the
// alert gauge is 1, and running again fails the same way without reading the stream.
func TestChangeStreamHistoryLost(t *testing.T) {
	// A server of its own: the trim would fail the other tests' streams.
	own := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	c, err := mongo.Connect(options.Client().ApplyURI(own.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	f := newCSFixtureOn(t, c)
	ctx := context.Background()
	r := start(t, f.tailer(t, shadow.Forward))
	_, err = f.oldColl.InsertOne(ctx, oldDoc("x", 1))
	require.NoError(t, err)
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	require.NoError(t, r.stop(t))

	_, err = f.oldColl.InsertOne(ctx, oldDoc("lost", 2))
	require.NoError(t, err)
	require.NoError(t, testenv.TrimOplog(ctx, c))

	r = start(t, f.tailer(t, shadow.Forward))
	err = r.wait(t)
	require.ErrorIs(t, err, cdc.ErrHistoryLost)
	require.Contains(t, err.Error(), "tandem cdc resync")
	s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	assert.Equal(t, catalog.CDCHistoryLost, s.State)
	assert.Contains(t, s.Detail, "ChangeStreamHistoryLost")
	assert.Contains(t, s.Detail, "a new copy from a fresh position")
	assert.EqualValues(t, 1, metric(t, f.reg, "tandem_cdc_stopped", map[string]string{"state": "history_lost"}))

	err = f.tailer(t, shadow.Forward).Run(ctx)
	require.ErrorIs(t, err, cdc.ErrHistoryLost, "a second run")
	ok, _ := allConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	assert.False(t, ok, "the lost insert was converged: the test proves nothing")
}

// TestChangeStreamDropInvalidates drops the followed collection: the tailer converges what came
// before the drop, then stops with ErrInvalidated, state invalidated and the alert gauge at 1.
func TestChangeStreamDropInvalidates(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	r := start(t, f.tailer(t, shadow.Forward))
	_, err := f.oldColl.InsertOne(ctx, oldDoc("before-drop", 1))
	require.NoError(t, err)
	require.NoError(t, f.oldColl.Drop(ctx))
	err = r.wait(t)
	require.ErrorIs(t, err, cdc.ErrInvalidated)
	require.Contains(t, err.Error(), "drop event")
	s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	assert.Equal(t, catalog.CDCInvalidated, s.State)
	assert.EqualValues(t, 1, s.Applied, "the insert before the drop was applied and checkpointed")
	assert.EqualValues(t, 1, metric(t, f.reg, "tandem_cdc_stopped", map[string]string{"state": "invalidated"}))
}

// TestChangeStreamBadKey inserts a document whose _id is null (MongoDB accepts it): its event
// has no usable key, so the tailer stops in state bad_event with the checkpoint before it.
func TestChangeStreamBadKey(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	r := start(t, f.tailer(t, shadow.Forward))
	_, err := f.oldColl.InsertOne(ctx, oldDoc("good", 1))
	require.NoError(t, err)
	_, err = f.oldColl.InsertOne(ctx, bson.D{{Key: "_id", Value: nil}, {Key: "name", Value: "null key"}})
	require.NoError(t, err)
	err = r.wait(t)
	require.ErrorIs(t, err, cdc.ErrBadEvent)
	require.Contains(t, err.Error(), "null")
	s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	assert.Equal(t, catalog.CDCBadEvent, s.State)
	assert.EqualValues(t, 1, s.Applied, "the checkpoint is after the good insert and before the bad one")
}

// TestNoPingPong runs both tailers: every forward converge's write to new comes back on the
// reverse stream, where converge finds old equal and writes nothing; so old's stream carries
// only the test's own writes and the round trip ends.
func TestNoPingPong(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	start(t, f.tailer(t, shadow.Forward))
	start(t, f.tailer(t, shadow.Reverse))
	const n = 20
	for i := range n {
		_, err := f.oldColl.InsertOne(ctx, oldDoc(fmt.Sprintf("p%d", i), int32(i)))
		require.NoError(t, err)
	}
	for i := range n / 2 {
		_, err := f.oldColl.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("p%d", i)}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "changed"}}}})
		require.NoError(t, err)
	}
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	forward := map[string]string{"direction": "forward"}
	reverse := map[string]string{"direction": "reverse"}
	// Every forward upsert is one event on new's stream; wait until the reverse tailer has
	// converged each of them.
	eventually(t, "the reverse tailer to see every forward write", func() bool {
		up := metric(t, f.reg, "tandem_cdc_converged_total", map[string]string{"direction": "forward", "result": "upserted"})
		return up > 0 && metric(t, f.reg, "tandem_cdc_changes_total", reverse) >= up
	})
	assert.Zero(t, metric(t, f.reg, "tandem_cdc_converged_total", map[string]string{"direction": "reverse", "result": "upserted"}),
		"a reverse converge wrote to old")
	assert.Zero(t, metric(t, f.reg, "tandem_cdc_converged_total", map[string]string{"direction": "reverse", "result": "deleted"}))
	// Old's stream carried the test's writes only: a sentinel written now follows any echo in
	// the stream's order, so once it is converged every echo would have been counted.
	_, err := f.oldColl.InsertOne(ctx, oldDoc("sentinel", 1))
	require.NoError(t, err)
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	eventually(t, "the sentinel's change applied", func() bool {
		return metric(t, f.reg, "tandem_cdc_changes_total", forward) >= n+n/2+1
	})
	s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	eventually(t, "the sentinel checkpointed", func() bool {
		s, err = f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
		require.NoError(t, err)
		return s.Applied >= n+n/2+1
	})
	assert.EqualValues(t, n+n/2+1, s.Applied, "old's stream carried more than the test's writes: an echo")
}

// metric sums the samples of a counter or gauge family whose labels include labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	f := &fixture{reg: reg}
	return f.metric(t, name, labels)
}
