package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// waitLimit bounds every wait of these tests; it is a limit for a hung test, not a timing
// assertion.
const waitLimit = 60 * time.Second

// newKafka starts an in-process Kafka (kfake) for one test.
func newKafka(t *testing.T, brokers int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// newJournal returns a journal on the Kafka of seeds with a new topic of partitions partitions
// (named after the test, unique in the binary, since a real broker is shared), fast retries and
// heartbeats, and its own metrics registry.
func newJournal(t *testing.T, seeds []string, partitions int32, mod func(*KafkaJournalConfig)) (*KafkaJournal, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := KafkaJournalConfig{
		Brokers:  seeds,
		Topic:    testTopic(t),
		Options:  []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.FetchMaxWait(200 * time.Millisecond), kgo.MetadataMinAge(250 * time.Millisecond)},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:  NewJournalMetrics(reg),
		RetryMin: 5 * time.Millisecond,
		RetryMax: 50 * time.Millisecond,
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if mod != nil {
		mod(&cfg)
	}
	j, err := NewKafkaJournal(cfg)
	require.NoError(t, err)
	t.Cleanup(j.Close)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, j.EnsureTopic(ctx, partitions, 1))
	return j, reg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// collector gathers what handlers receive and signals when a condition holds.
type collector struct {
	mu      sync.Mutex
	batches [][]JournalEntry
	bad     []BadRecord
	changed chan struct{}
}

func newCollector() *collector { return &collector{changed: make(chan struct{}, 1)} }

func (c *collector) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *collector) handle(_ context.Context, batch []JournalEntry) error {
	c.mu.Lock()
	c.batches = append(c.batches, slices.Clone(batch))
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *collector) onBad(_ context.Context, r BadRecord) error {
	c.mu.Lock()
	c.bad = append(c.bad, r)
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *collector) entries() []JournalEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []JournalEntry
	for _, b := range c.batches {
		out = append(out, b...)
	}
	return out
}

// waitFor waits until cond holds (checked whenever the collector changes, and every 20ms for
// what it does not see, such as commits) or fails the test.
func (c *collector) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-c.changed:
		case <-tick.C:
		case <-limit.C:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// consume runs j.Consume in the background until the test ends or stop is called; the
// returned channel yields Consume's error.
func consume(t *testing.T, j *KafkaJournal, group string, handle func(context.Context, []JournalEntry) error) (stop func(), done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- j.Consume(ctx, testGroup(j, group), handle) }()
	var once sync.Once
	var err error
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err = <-ch:
			case <-time.After(waitLimit):
				err = errors.New("Consume did not return after its context ended")
			}
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Consume returned %v, want context.Canceled", err)
		}
	}
	t.Cleanup(stop)
	return stop, ch
}

func entryFor(migration string, key Key, op string, at time.Time) JournalEntry {
	return JournalEntry{Migration: migration, Key: key, Namespace: "db.users", Op: op, Reason: "queue_full", At: at}
}

func lag(t *testing.T, j *KafkaJournal, group string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	n, err := j.Lag(ctx, testGroup(j, group))
	require.NoError(t, err)
	return n
}

func TestKafkaJournalConfigIsChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  KafkaJournalConfig
		want string
	}{
		{"no brokers", KafkaJournalConfig{}, "Brokers is required"},
		{"broker without port", KafkaJournalConfig{Brokers: []string{"localhost"}}, `broker "localhost" is not host:port`},
		{"bad topic", KafkaJournalConfig{Brokers: []string{"127.0.0.1:9092"}, Topic: "a/b"}, `"a/b" is not a valid topic name`},
		{"dot topic", KafkaJournalConfig{Brokers: []string{"127.0.0.1:9092"}, Topic: ".."}, "not a valid topic name"},
		{"negative backoff", KafkaJournalConfig{Brokers: []string{"127.0.0.1:9092"}, RetryMin: -1}, "negative retry backoff"},
		{"negative batch", KafkaJournalConfig{Brokers: []string{"127.0.0.1:9092"}, MaxBatch: -1}, "negative MaxBatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewKafkaJournal(tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	j, err := NewKafkaJournal(KafkaJournalConfig{Brokers: []string{"127.0.0.1:9092"}})
	require.NoError(t, err)
	defer j.Close()
	assert.Equal(t, DefaultJournalTopic, j.Topic())
	assert.ErrorContains(t, j.Consume(context.Background(), "", func(context.Context, []JournalEntry) error { return nil }), "no group")
	assert.ErrorContains(t, j.Consume(context.Background(), "g", nil), "no handler")
}

func TestKafkaJournalAppendRefusesInvalidEntries(t *testing.T) {
	onEachKafka(t, 1, testKafkaJournalAppendRefusesInvalidEntries)
}

func testKafkaJournalAppendRefusesInvalidEntries(t *testing.T, seeds []string) {
	j, _ := newJournal(t, seeds, 1, nil)
	ctx := context.Background()
	now := time.Now()
	good := entryFor("m", "k1", "update", now)
	for _, tc := range []struct {
		name  string
		entry JournalEntry
		want  string
	}{
		{"no migration", JournalEntry{Key: "k", Namespace: "db.c", At: now}, "no migration"},
		{"no key, no filter, no namespace", JournalEntry{Migration: "m", At: now}, "needs a namespace"},
		{"unkeyed without namespace", JournalEntry{Migration: "m", Filter: bson.Raw(mustMarshal(t, bson.D{{Key: "a", Value: 1}})), At: now}, "needs a namespace"},
		{"filter not BSON", JournalEntry{Migration: "m", Namespace: "db.c", Filter: bson.Raw{1, 2, 3}, At: now}, "filter is not a BSON document"},
		{"key not encodable", JournalEntry{Migration: "m", Key: make(chan int), Namespace: "db.c", At: now}, "encoding BSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := j.Append(ctx, good, tc.entry)
			require.ErrorIs(t, err, ErrInvalidEntry)
			assert.Contains(t, err.Error(), "entry 2 of 2")
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	assert.Zero(t, lag(t, j, "nobody"), "nothing may be produced when one entry is invalid")
	require.NoError(t, j.Append(ctx))
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := bson.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestKafkaJournalRoundTrip appends keyed entries of several key types, unkeyed entries and
// foreign records, and checks what a consumer gets: every entry, decoded as appended; the
// entries of one key in one partition, in append order; bad records reported and committed past.
func TestKafkaJournalRoundTrip(t *testing.T) { onEachKafka(t, 3, testKafkaJournalRoundTrip) }

func testKafkaJournalRoundTrip(t *testing.T, seeds []string) {
	col := newCollector()
	j, reg := newJournal(t, seeds, 6, func(cfg *KafkaJournalConfig) { cfg.OnBadRecord = col.onBad })
	ctx := context.Background()

	oid := bson.NewObjectID()
	keys := []Key{"a", "b", "c", int32(7), int64(7), "7", oid, bson.D{{Key: "tenant", Value: "t1"}, {Key: "id", Value: int32(2)}}}
	base := time.Now().Truncate(time.Millisecond).UTC()
	var want []JournalEntry
	const rounds = 5
	for r := range rounds { // one Append per round: a key's entries cross calls
		var batch []JournalEntry
		for i, k := range keys {
			batch = append(batch, entryFor("users", k, "update", base.Add(time.Duration(r*len(keys)+i)*time.Millisecond)))
		}
		require.NoError(t, j.Append(ctx, batch...))
		want = append(want, batch...)
	}
	filter := bson.Raw(mustMarshal(t, bson.D{{Key: "status", Value: "old"}}))
	unkeyed := JournalEntry{Migration: "users", Namespace: "db.users", Op: "update", Filter: filter, Reason: "unkeyed_write", At: base}
	// An insert without _id: unkeyed, and no filter either. It must not make its batch fail.
	noFilter := JournalEntry{Migration: "users", Namespace: "db.users", Op: "insert", Reason: "unkeyed_write", At: base}
	require.NoError(t, j.Append(ctx, unkeyed, noFilter, entryFor("orders", "a", "delete", base)))
	want = append(want, unkeyed, noFilter, entryFor("orders", "a", "delete", base))

	// Records that are not journal entries: not BSON, another format version, a bad entry.
	raw, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(j.Topic()))
	require.NoError(t, err)
	defer raw.Close()
	v2 := mustMarshal(t, bson.D{{Key: "v", Value: int32(2)}, {Key: "entry", Value: bson.D{}}})
	noMigration := mustMarshal(t, bson.D{{Key: "v", Value: int32(1)}, {Key: "entry", Value: bson.D{{Key: "key", Value: "x"}}}})
	require.NoError(t, raw.ProduceSync(ctx,
		&kgo.Record{Key: []byte("x"), Value: []byte("not bson")},
		&kgo.Record{Key: []byte("x"), Value: v2},
		&kgo.Record{Key: []byte("x"), Value: noMigration},
	).FirstErr())

	_, _ = consume(t, j, "g1", col.handle)
	col.waitFor(t, "every entry and bad record", func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		n := 0
		for _, b := range col.batches {
			n += len(b)
		}
		return n >= len(want) && len(col.bad) >= 3
	})

	got := col.entries()
	require.Len(t, got, len(want), "each entry once: nothing failed, so nothing was redelivered")
	partitionOf := map[string]int32{}
	lastOffset := map[string]int64{}
	for _, e := range got {
		id := string(recordKey(e))
		assert.Equal(t, j.Topic(), e.Position.Topic)
		if p, seen := partitionOf[id]; seen {
			assert.Equal(t, p, e.Position.Partition, "key %s changed partition", id)
			assert.Greater(t, e.Position.Offset, lastOffset[id], "key %s out of order", id)
		}
		partitionOf[id], lastOffset[id] = e.Position.Partition, e.Position.Offset
	}
	// Decoded as appended (Position aside), and per key in append order.
	byKey := func(es []JournalEntry) map[string][]JournalEntry {
		m := map[string][]JournalEntry{}
		for _, e := range es {
			e.Position = JournalPosition{}
			m[string(recordKey(e))] = append(m[string(recordKey(e))], e)
		}
		return m
	}
	gotBy, wantBy := byKey(got), byKey(want)
	require.Len(t, gotBy, len(wantBy))
	for id, w := range wantBy {
		g := gotBy[id]
		require.Len(t, g, len(w), id)
		for i := range w {
			assert.Equal(t, KeyString(w[i].Key), KeyString(g[i].Key), id)
			assert.True(t, w[i].At.Equal(g[i].At), "%s: at %v, want %v", id, g[i].At, w[i].At)
			g[i].Key, w[i].Key, g[i].At, w[i].At = nil, nil, time.Time{}, time.Time{}
			assert.Equal(t, w[i], g[i], id)
		}
	}
	// Same-looking keys of different BSON types are different keys.
	assert.NotEqual(t, string(recordKey(entryFor("users", int32(7), "", base))), string(recordKey(entryFor("users", "7", "", base))))

	col.mu.Lock()
	bad := slices.Clone(col.bad)
	col.mu.Unlock()
	require.Len(t, bad, 3)
	for i, wantErr := range []string{"not a BSON document", "format version 2, this build reads 1", "no migration"} {
		assert.ErrorIs(t, bad[i].Err, ErrBadRecord)
		assert.ErrorContains(t, bad[i].Err, wantErr)
		assert.Equal(t, j.Topic(), bad[i].Topic)
		assert.Equal(t, []byte("x"), bad[i].Key)
		if i > 0 {
			assert.Equal(t, bad[0].Partition, bad[i].Partition)
			assert.Equal(t, bad[i-1].Offset+1, bad[i].Offset)
		}
	}
	assert.Equal(t, 3.0, counterValue(t, reg, "tandem_journal_bad_records_total"))
	assert.Equal(t, float64(len(want)), counterValue(t, reg, "tandem_journal_appended_total"))
	col.waitFor(t, "every record committed", func() bool { return lag(t, j, "g1") == 0 })
}

// counterValue sums the samples of a counter family in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestKafkaJournalRetriesUntilHandled fails the handler a few times: the same batch comes back
// each time and nothing is committed until it succeeds. A second consumer of the group, after
// the first stopped, starts at the committed offsets.
func TestKafkaJournalRetriesUntilHandled(t *testing.T) {
	onEachKafka(t, 1, testKafkaJournalRetriesUntilHandled)
}

func testKafkaJournalRetriesUntilHandled(t *testing.T, seeds []string) {
	j, reg := newJournal(t, seeds, 1, nil)
	ctx := context.Background()
	now := time.Now()
	var first []JournalEntry
	for i := range 20 {
		first = append(first, entryFor("m", fmt.Sprintf("k%02d", i), "update", now))
	}
	require.NoError(t, j.Append(ctx, first...))

	const failures = 3
	var (
		mu       sync.Mutex
		attempts [][]int64 // offsets of each batch handed over
		lags     []int64   // committed lag seen while failing
	)
	col := newCollector()
	stop, _ := consume(t, j, "g", func(ctx context.Context, batch []JournalEntry) error {
		offsets := make([]int64, len(batch))
		for i, e := range batch {
			offsets[i] = e.Position.Offset
		}
		mu.Lock()
		attempts = append(attempts, offsets)
		n := len(attempts)
		mu.Unlock()
		if n <= failures {
			l, err := j.Lag(ctx, testGroup(j, "g"))
			if err != nil {
				return err
			}
			mu.Lock()
			lags = append(lags, l)
			mu.Unlock()
			return fmt.Errorf("store down (attempt %d)", n)
		}
		return col.handle(ctx, batch)
	})
	col.waitFor(t, "the batch to succeed and be committed", func() bool {
		return len(col.entries()) >= len(first) && lag(t, j, "g") == 0
	})
	stop()

	mu.Lock()
	require.Greater(t, len(attempts), failures)
	for i := 1; i <= failures; i++ {
		assert.Equal(t, attempts[0], attempts[i], "attempt %d got another batch", i+1)
	}
	assert.Equal(t, []int64{20, 20, 20}, lags, "nothing committed while the handler failed")
	mu.Unlock()
	assert.Equal(t, float64(failures), testutil.ToFloat64(j.m.retries.WithLabelValues("handle")))
	assert.Equal(t, float64(failures), counterValue(t, reg, "tandem_journal_retries_total"))

	// A new member of the group resumes at the committed offset: it gets the new entries and
	// (since everything was committed) none of the old ones; duplicates would be allowed.
	var second []JournalEntry
	for i := range 5 {
		second = append(second, entryFor("m", fmt.Sprintf("n%02d", i), "insert", now))
	}
	require.NoError(t, j.Append(ctx, second...))
	col2 := newCollector()
	_, _ = consume(t, j, "g", col2.handle)
	col2.waitFor(t, "the new entries", func() bool { return len(col2.entries()) >= len(second) })
	var gotKeys []string
	for _, e := range col2.entries() {
		gotKeys = append(gotKeys, e.Key.(string))
	}
	assert.Equal(t, []string{"n00", "n01", "n02", "n03", "n04"}, gotKeys)
}

// TestKafkaJournalRevocationMidRetry: member A fails every batch; member B joins and takes over
// some partitions, which A gives up without committing; when A leaves, B handles everything.
func TestKafkaJournalRevocationMidRetry(t *testing.T) {
	onEachKafka(t, 1, testKafkaJournalRevocationMidRetry)
}

func testKafkaJournalRevocationMidRetry(t *testing.T, seeds []string) {
	j, _ := newJournal(t, seeds, 4, nil)
	ctx := context.Background()
	now := time.Now()
	var all []JournalEntry
	for i := range 40 {
		all = append(all, entryFor("m", fmt.Sprintf("k%02d", i), "update", now))
	}
	require.NoError(t, j.Append(ctx, all...))

	failing := newCollector()
	var aMu sync.Mutex
	aCanceled := 0
	stopA, _ := consume(t, j, "g", func(ctx context.Context, batch []JournalEntry) error {
		_ = failing.handle(ctx, batch)
		if ctx.Err() != nil {
			aMu.Lock()
			aCanceled++
			aMu.Unlock()
		}
		return errors.New("always failing")
	})
	failing.waitFor(t, "A to fail on every partition", func() bool {
		parts := map[int32]bool{}
		for _, e := range failing.entries() {
			parts[e.Position.Partition] = true
		}
		return len(parts) == 4
	})
	assert.Equal(t, int64(len(all)), lag(t, j, "g"))

	b := newCollector()
	_, _ = consume(t, j, "g", b.handle)
	// B gets some partitions while A still retries the others.
	b.waitFor(t, "B to handle and commit the partitions it was given", func() bool { return lag(t, j, "g") < int64(len(all)) })
	assert.Greater(t, lag(t, j, "g"), int64(0), "A committed nothing")

	stopA()
	b.waitFor(t, "B to handle everything after A left", func() bool {
		seen := map[string]bool{}
		for _, e := range b.entries() {
			seen[e.Key.(string)] = true
		}
		return len(seen) == len(all)
	})
	b.waitFor(t, "everything committed", func() bool { return lag(t, j, "g") == 0 })
}

func TestKafkaJournalEnsureTopicIsIdempotent(t *testing.T) {
	onEachKafka(t, 1, testKafkaJournalEnsureTopicIsIdempotent)
}

func testKafkaJournalEnsureTopicIsIdempotent(t *testing.T, seeds []string) {
	j, _ := newJournal(t, seeds, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, j.EnsureTopic(ctx, 3, 1), "existing topic")
	require.NoError(t, j.EnsureTopic(ctx, 5, 1), "existing topic with another partition count")
	require.NoError(t, j.EnsureTopic(ctx, -1, -1), "broker defaults")
	details, err := kadm.NewClient(j.producer).ListTopics(ctx, j.Topic())
	require.NoError(t, err)
	assert.Len(t, details[j.Topic()].Partitions, 3, "an existing topic is left as it is")
	assert.ErrorContains(t, j.EnsureTopic(ctx, 0, 1), "must be positive or -1")
	assert.ErrorContains(t, j.EnsureTopic(ctx, 1, -2), "must be positive or -1")
}

// TestKafkaJournalAppendNamesWhatFailed stops the cluster under the journal: kfake only, since
// the real broker is shared by the binary.
func TestKafkaJournalAppendNamesWhatFailed(t *testing.T) {
	c := newKafka(t, 1)
	j, _ := newJournal(t, c.ListenAddrs(), 1, nil)
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := j.Append(ctx, entryFor("m", "k1", "update", time.Now()), entryFor("m", int32(2), "update", time.Now()))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2 of 2 entries not acknowledged")
	assert.Contains(t, err.Error(), `key "k1"`)
	assert.Contains(t, err.Error(), `key {"$numberInt":"2"}`)
	assert.Equal(t, 2.0, testutil.ToFloat64(j.m.appendFailures))
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	lo, hi := 100*time.Millisecond, 5*time.Second
	for attempt := 1; attempt < 80; attempt++ {
		d := backoff(lo, hi, attempt)
		ceiling := min(hi, lo<<min(attempt-1, 20))
		assert.GreaterOrEqual(t, d, ceiling/2, "attempt %d", attempt)
		assert.LessOrEqual(t, d, ceiling, "attempt %d", attempt)
	}
}

// BenchmarkKafkaJournalAppend measures Append of 100 entries a call to an in-process kfake
// (so it measures the client and encoding, not a real broker's disk).
func BenchmarkKafkaJournalAppend(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(b, err)
	defer c.Close()
	j, err := NewKafkaJournal(KafkaJournalConfig{Brokers: c.ListenAddrs(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	defer j.Close()
	ctx := context.Background()
	require.NoError(b, j.EnsureTopic(ctx, 6, 1))
	batch := make([]JournalEntry, 100)
	now := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		for k := range batch {
			batch[k] = entryFor("users", fmt.Sprintf("k%09d", i+k), "update", now)
		}
		require.NoError(b, j.Append(ctx, batch...))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkKafkaJournalConsume measures consuming and committing b.N entries (a handler that
// does nothing) from an in-process kfake, six partitions.
func BenchmarkKafkaJournalConsume(b *testing.B) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	require.NoError(b, err)
	defer c.Close()
	j, err := NewKafkaJournal(KafkaJournalConfig{Brokers: c.ListenAddrs(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(b, err)
	defer j.Close()
	ctx := context.Background()
	require.NoError(b, j.EnsureTopic(ctx, 6, 1))
	now := time.Now()
	for i := 0; i < b.N; i += 1000 {
		var batch []JournalEntry
		for k := i; k < min(i+1000, b.N); k++ {
			batch = append(batch, entryFor("users", fmt.Sprintf("k%09d", k), "update", now))
		}
		require.NoError(b, j.Append(ctx, batch...))
	}
	var seen atomic.Int64
	var once sync.Once
	done := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ResetTimer()
	go func() {
		_ = j.Consume(cctx, "bench", func(_ context.Context, batch []JournalEntry) error {
			if seen.Add(int64(len(batch))) >= int64(b.N) {
				once.Do(func() { close(done) })
			}
			return nil
		})
	}()
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
