package shadow_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
)

// recordingJournal is a test double of shadow.Journal (the real one is Kafka, in adapters): it
// keeps the entries it is given, or, while failing is set, refuses them.
type recordingJournal struct {
	mu      sync.Mutex
	entries []adapters.JournalEntry
	failing bool
}

var errJournalDown = errors.New("journal down (test)")

func (j *recordingJournal) Append(_ context.Context, entries ...adapters.JournalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failing {
		return errJournalDown
	}
	j.entries = append(j.entries, entries...)
	return nil
}

func (j *recordingJournal) all() []adapters.JournalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]adapters.JournalEntry(nil), j.entries...)
}

// newStoreResults counts what a Writer reports to OnNewStoreResult.
type newStoreResults struct{ ok, failed atomic.Int64 }

func (r *newStoreResults) record(failed bool) {
	if failed {
		r.failed.Add(1)
	} else {
		r.ok.Add(1)
	}
}

// metricValue returns the value of the counter or gauge name with exactly labels (0 if absent).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func writes(t *testing.T, reg *prometheus.Registry, mode, result string) float64 {
	return metricValue(t, reg, "tandem_shadow_writes_total", map[string]string{"mode": mode, "result": result})
}

type writerFixture struct {
	*fixture
	journal *recordingJournal
	reg     *prometheus.Registry
	results *newStoreResults
	w       *shadow.Writer
}

// newWriter builds a Writer over f's engine (or engine, if given) with a recording journal.
func newWriter(t *testing.T, f *fixture, engine *shadow.Engine, workers, depth int) *writerFixture {
	t.Helper()
	if engine == nil {
		engine = f.engine
	}
	wf := &writerFixture{fixture: f, journal: &recordingJournal{}, reg: prometheus.NewRegistry(), results: &newStoreResults{}}
	var err error
	wf.w, err = shadow.NewWriter(shadow.WriterConfig{
		Engine: engine, Journal: wf.journal, Namespace: "d.users", Workers: workers, Depth: depth,
		Timeout: 3 * time.Second, OnNewStoreResult: wf.results.record, Metrics: shadow.NewMetrics(wf.reg),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = wf.w.Close(context.Background()) })
	return wf
}

// seedUsers inserts n users named prefix00… into old and returns their keys.
func seedUsers(t *testing.T, f *fixture, prefix string, n int) []adapters.Key {
	t.Helper()
	keys := make([]adapters.Key, n)
	for i := range keys {
		k := fmt.Sprintf("%s%02d", prefix, i)
		keys[i] = k
		require.NoError(t, f.old.Upsert(context.Background(), user(k, int32(i))))
	}
	return keys
}

// downStore returns a store on a FerretDB that has been stopped: every operation fails (the
// client connects after the stop, so no connection opened before it lingers).
func downStore(t *testing.T) adapters.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedmongo.Start(ctx, embedmongo.Options{})
	require.NoError(t, err)
	srv.Stop()
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()).SetServerSelectionTimeout(300 * time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return adapters.NewMongoStore(c.Database("down").Collection("users_v2"))
}

// engineWithNew is f's engine with another new store.
func engineWithNew(t *testing.T, f *fixture, newStore adapters.Store) *shadow.Engine {
	t.Helper()
	e, err := shadow.NewEngine(shadow.Config{
		Migration: "users-test", SpecVersion: f.spec.Version,
		Old: f.old, New: newStore, Forward: f.spec.Forward, Reverse: f.spec.Reverse, DeadLetters: f.cat,
	})
	require.NoError(t, err)
	return e
}

func journaledKeys(entries []adapters.JournalEntry) map[string]string {
	out := map[string]string{}
	for _, e := range entries {
		out[adapters.KeyString(e.Key)] = e.Reason
	}
	return out
}

func TestWriterAsyncConverges(t *testing.T) {
	f := newFixture(t, "fail")
	wf := newWriter(t, f, nil, 4, 64)
	keys := seedUsers(t, f, "a", 20)
	require.NoError(t, f.old.Upsert(context.Background(), user("bad", "thirty")))
	wf.w.Async(keys, "insert")
	wf.w.Async([]adapters.Key{"bad"}, "insert")
	require.NoError(t, wf.w.Close(context.Background()))

	for _, k := range keys {
		f.expectTarget(t, k.(string))
	}
	assert.Empty(t, wf.journal.all())
	assert.Equal(t, 20.0, writes(t, wf.reg, "async", "converged"))
	assert.Equal(t, 1.0, writes(t, wf.reg, "async", "dead_lettered"), "a document that cannot transform is the engine's dead letter")
	assert.Equal(t, int64(21), wf.results.ok.Load())
	assert.Zero(t, wf.results.failed.Load())

	// After Close a key is still never dropped: it is journaled at once.
	wf.w.Async([]adapters.Key{"late"}, "update")
	entries := wf.journal.all()
	require.Len(t, entries, 1)
	assert.Equal(t, "late", entries[0].Key)
	assert.Equal(t, shadow.ReasonQueueFull, entries[0].Reason)
}

// fillQueue holds the first key so that the single worker blocks on it, then submits all keys:
// at most two fit (the one the worker holds and one in the queue of depth 1).
func fillQueue(t *testing.T, wf *writerFixture, keys []adapters.Key) {
	t.Helper()
	release := shadow.HoldKey(wf.engine, keys[0])
	wf.w.Async(keys, "update")
	release()
	require.NoError(t, wf.w.Close(context.Background()))
}

func TestWriterQueueFullJournalsKeys(t *testing.T) {
	f := newFixture(t, "fail")
	wf := newWriter(t, f, nil, 1, 1)
	keys := seedUsers(t, f, "q", 10)
	fillQueue(t, wf, keys)

	entries := wf.journal.all()
	assert.GreaterOrEqual(t, len(entries), 8)
	journaled := journaledKeys(entries)
	for _, e := range entries {
		assert.Equal(t, shadow.ReasonQueueFull, e.Reason)
		assert.Equal(t, "update", e.Op)
		assert.Equal(t, "d.users", e.Namespace)
		assert.Equal(t, "users-test", e.Migration)
		assert.False(t, e.At.IsZero())
	}
	for _, k := range keys {
		if _, ok := journaled[adapters.KeyString(k)]; ok {
			_, err := f.new.Get(context.Background(), k)
			assert.ErrorIs(t, err, adapters.ErrNotFound, "%v was journaled, not converged", k)
		} else {
			f.expectTarget(t, k.(string))
		}
	}
	assert.Equal(t, float64(len(entries)), writes(t, wf.reg, "async", "journaled"))
	assert.Equal(t, float64(len(keys)-len(entries)), writes(t, wf.reg, "async", "converged"))
	assert.Equal(t, float64(len(entries)), metricValue(t, wf.reg, "tandem_shadow_journaled_total", map[string]string{"reason": "queue_full"}))
}

func TestWriterJournalFailureDeadLetters(t *testing.T) {
	f := newFixture(t, "fail")
	wf := newWriter(t, f, nil, 1, 1)
	wf.journal.failing = true
	keys := seedUsers(t, f, "j", 10)
	fillQueue(t, wf, keys)

	ctx := context.Background()
	dls, err := f.cat.DeadLetters(ctx, "users-test", catalog.DeadLetterFilter{})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(dls), 8)
	for _, d := range dls {
		assert.Equal(t, shadow.StepJournal, d.Step)
		assert.Equal(t, "forward", d.Direction)
		assert.Empty(t, d.SpecVersion, "no spec version, so that RetryDeadLetters retries it")
		assert.Contains(t, d.Reason, "queue_full")
		assert.Contains(t, d.Reason, errJournalDown.Error())
	}
	assert.Equal(t, float64(len(dls)), writes(t, wf.reg, "async", "dead_lettered"))
	assert.Zero(t, writes(t, wf.reg, "async", "lost"))

	results, err := f.engine.RetryDeadLetters(ctx)
	require.NoError(t, err)
	assert.Len(t, results, len(dls))
	for _, r := range results {
		assert.Equal(t, shadow.Upserted, r.Action, "%v", r.Key)
	}
	n, err := f.cat.CountDeadLetters(ctx, "users-test")
	require.NoError(t, err)
	assert.Zero(t, n)
	for _, k := range keys {
		f.expectTarget(t, k.(string))
	}
}

func TestWriterSync(t *testing.T) {
	ctx := context.Background()
	t.Run("converges", func(t *testing.T) {
		f := newFixture(t, "fail")
		wf := newWriter(t, f, nil, 0, 0)
		keys := seedUsers(t, f, "s", 5)
		require.NoError(t, wf.w.Sync(ctx, append(keys, keys[0]), "insert"))
		for _, k := range keys {
			f.expectTarget(t, k.(string))
		}
		assert.Equal(t, 5.0, writes(t, wf.reg, "sync", "converged"))
		assert.Equal(t, int64(5), wf.results.ok.Load())
		assert.Empty(t, wf.journal.all())
	})
	t.Run("dead letter", func(t *testing.T) {
		f := newFixture(t, "fail")
		wf := newWriter(t, f, nil, 0, 0)
		require.NoError(t, f.old.Upsert(ctx, user("ok", int32(1))))
		require.NoError(t, f.old.Upsert(ctx, user("bad", "x")))
		err := wf.w.Sync(ctx, []adapters.Key{"ok", "bad"}, "insert")
		require.ErrorIs(t, err, shadow.ErrDeadLettered)
		assert.Contains(t, err.Error(), `"bad"`)
		f.expectTarget(t, "ok")
		assert.Empty(t, wf.journal.all(), "journaling a document that cannot transform would not help")
	})
	t.Run("new store down", func(t *testing.T) {
		f := newFixture(t, "fail")
		wf := newWriter(t, f, engineWithNew(t, f, downStore(t)), 0, 0)
		keys := seedUsers(t, f, "d", 3)
		err := wf.w.Sync(ctx, keys, "update")
		require.ErrorIs(t, err, shadow.ErrNotConverged)
		assert.Contains(t, err.Error(), "journaled")
		entries := wf.journal.all()
		require.Len(t, entries, 3)
		for i, e := range entries {
			assert.Equal(t, keys[i], e.Key)
			assert.Equal(t, shadow.ReasonConvergeFailed, e.Reason)
			assert.Equal(t, "update", e.Op)
		}
		assert.Equal(t, int64(3), wf.results.failed.Load())
		assert.Equal(t, 3.0, writes(t, wf.reg, "sync", "journaled"))
	})
	t.Run("new store and journal down", func(t *testing.T) {
		f := newFixture(t, "fail")
		wf := newWriter(t, f, engineWithNew(t, f, downStore(t)), 0, 0)
		wf.journal.failing = true
		keys := seedUsers(t, f, "x", 2)
		err := wf.w.Sync(ctx, keys, "update")
		require.ErrorIs(t, err, shadow.ErrNotConverged)
		assert.Contains(t, err.Error(), "dead letters")
		dls, derr := f.cat.DeadLetters(ctx, "users-test", catalog.DeadLetterFilter{})
		require.NoError(t, derr)
		require.Len(t, dls, 2)
		assert.Contains(t, dls[0].Reason, "converge_failed")
		assert.Equal(t, 2.0, writes(t, wf.reg, "sync", "dead_lettered"))
	})
}

func TestWriterAsyncConvergeFailureJournals(t *testing.T) {
	f := newFixture(t, "fail")
	wf := newWriter(t, f, engineWithNew(t, f, downStore(t)), 2, 16)
	keys := seedUsers(t, f, "f", 4)
	wf.w.Async(keys, "delete")
	require.NoError(t, wf.w.Close(context.Background()))
	journaled := journaledKeys(wf.journal.all())
	require.Len(t, journaled, 4)
	for _, k := range keys {
		assert.Equal(t, shadow.ReasonConvergeFailed, journaled[adapters.KeyString(k)])
	}
	assert.Equal(t, int64(4), wf.results.failed.Load())
	assert.Equal(t, 4.0, writes(t, wf.reg, "async", "journaled"))
}

func TestWriterUnkeyed(t *testing.T) {
	f := newFixture(t, "fail")
	wf := newWriter(t, f, nil, 0, 0)
	filter, err := bson.Marshal(bson.D{{Key: "age", Value: bson.D{{Key: "$gt", Value: 30}}}})
	require.NoError(t, err)
	want := append(bson.Raw(nil), filter...)
	wf.w.Unkeyed(context.Background(), "updateMany", filter)
	clear(filter) // the proxy reuses its buffer
	require.NoError(t, wf.w.Close(context.Background()))

	entries := wf.journal.all()
	require.Len(t, entries, 1)
	assert.Nil(t, entries[0].Key)
	assert.Equal(t, want, entries[0].Filter)
	assert.Equal(t, shadow.ReasonUnkeyedWrite, entries[0].Reason)
	assert.Equal(t, "updateMany", entries[0].Op)
	assert.Equal(t, 1.0, writes(t, wf.reg, "unkeyed", "journaled"))
}

// TestWriterUnkeyedJournalDownIsLoggedLost: an unkeyed write has no dead-letter form; it is
// retried until Close, which then reports it lost (the change-stream path still covers it).
func TestWriterUnkeyedJournalDownIsLoggedLost(t *testing.T) {
	f := newFixture(t, "fail")
	wf := newWriter(t, f, nil, 0, 0)
	wf.journal.failing = true
	wf.w.Unkeyed(context.Background(), "deleteMany", bson.Raw(nil))
	err := wf.w.Close(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 journal entries lost")
	assert.Equal(t, 1.0, writes(t, wf.reg, "unkeyed", "lost"))
}

// TestWriterLostUnkeyedLogsNoFilterAboveDebug: an unkeyed write that neither the journal nor
// the dead letters take is logged at error by namespace, op and adapters.FilterHash; its
// filter, user data, shows in a debug record only (one recorder at info, one at debug).
func TestWriterLostUnkeyedLogsNoFilterAboveDebug(t *testing.T) {
	const secret = "ssn-123-45-6789"
	f := newFixture(t, "fail")
	info, debug := testenv.NewLogRecorder(slog.LevelInfo), testenv.NewLogRecorder(slog.LevelDebug)
	journal := &recordingJournal{failing: true}
	w, err := shadow.NewWriter(shadow.WriterConfig{
		Engine: f.engine, Journal: journal, Namespace: "d.users", Timeout: 3 * time.Second,
		Metrics: shadow.NewMetrics(nil), Log: slog.New(slog.NewMultiHandler(info, debug)),
	})
	require.NoError(t, err)
	filter, err := bson.Marshal(bson.D{{Key: "ssn", Value: secret}})
	require.NoError(t, err)
	w.Unkeyed(context.Background(), "updateMany", filter)
	require.ErrorContains(t, w.Close(context.Background()), "1 journal entries lost")

	for _, rec := range info.Records() {
		assert.NotContains(t, testenv.LogText(rec), secret, "an info-level record shows the filter")
	}
	lost, ok := info.Find("journal entry lost: neither the journal nor the dead letters took it")
	require.True(t, ok, "the lost entry is logged")
	assert.Equal(t, slog.LevelError, lost.Level)
	for key, want := range map[string]string{"ns": "d.users", "op": "updateMany", "filter_hash": adapters.FilterHash(filter)} {
		v, ok := testenv.LogAttr(lost, key)
		if assert.True(t, ok, "the error has %s: %s", key, testenv.LogText(lost)) {
			assert.Equal(t, want, v.String(), key)
		}
	}
	var shown []slog.Record
	for _, rec := range debug.Records() {
		if strings.Contains(testenv.LogText(rec), secret) {
			shown = append(shown, rec)
			assert.Equal(t, slog.LevelDebug, rec.Level, "the filter is shown at debug only: %s", testenv.LogText(rec))
		}
	}
	require.Len(t, shown, 1, "one debug record shows the filter")
	v, _ := testenv.LogAttr(shown[0], "filter_hash")
	assert.Equal(t, adapters.FilterHash(filter), v.String(), "the debug record has the error's hash")
}

func TestWriterCloseDrains(t *testing.T) {
	t.Run("queued keys converge", func(t *testing.T) {
		f := newFixture(t, "fail")
		wf := newWriter(t, f, nil, 2, 64)
		keys := seedUsers(t, f, "c", 40)
		wf.w.Async(keys, "insert")
		require.NoError(t, wf.w.Close(context.Background()))
		for _, k := range keys {
			f.expectTarget(t, k.(string))
		}
		assert.Equal(t, 40.0, writes(t, wf.reg, "async", "converged"))
		assert.Empty(t, wf.journal.all())
	})
	t.Run("an ended context journals what is left", func(t *testing.T) {
		f := newFixture(t, "fail")
		wf := newWriter(t, f, nil, 1, 16)
		keys := seedUsers(t, f, "e", 10)
		release := shadow.HoldKey(f.engine, keys[0])
		wf.w.Async(keys, "insert")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		closed := make(chan error, 1)
		go func() { closed <- wf.w.Close(ctx) }()
		release()
		require.ErrorIs(t, <-closed, context.Canceled)

		journaled := journaledKeys(wf.journal.all())
		for _, k := range keys {
			if reason, ok := journaled[adapters.KeyString(k)]; ok {
				assert.Equal(t, shadow.ReasonConvergeFailed, reason)
			} else {
				f.expectTarget(t, k.(string))
			}
		}
		assert.Equal(t, 10.0, writes(t, wf.reg, "async", "converged")+writes(t, wf.reg, "async", "journaled"), "every key converged or journaled")
		assert.Zero(t, writes(t, wf.reg, "async", "lost"))
	})
}
