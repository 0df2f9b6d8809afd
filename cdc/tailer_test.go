package cdc_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
)

// fakeSource is a fake cdc.Source (no server has a stream whose timing a test can set): it
// sends the batches the test hands it, then waits for ctx.
type fakeSource struct {
	batches chan cdc.Batch
}

func (s *fakeSource) Name() string                                { return "fake source" }
func (s *fakeSource) Start(context.Context) (cdc.Position, error) { return position(0), nil }
func (s *fakeSource) Run(ctx context.Context, _ cdc.Position, out chan<- cdc.Batch) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b := <-s.batches:
			select {
			case out <- b:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func position(n int) cdc.Position {
	b, _ := bson.Marshal(bson.D{{Key: "n", Value: n}})
	return b
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

// TestTailerLag checks the lag's definition on a fake source and a set clock: now minus the
// newest applied change's time while the source is behind, 0 once a batch says it is caught up.
func TestTailerLag(t *testing.T) {
	f := newCSFixture(t)
	clk := &clock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	src := &fakeSource{batches: make(chan cdc.Batch)}
	tl, err := cdc.NewTailer(cdc.TailerConfig{
		Migration: "users-test", Direction: shadow.Forward, Source: src, Engine: f.engine, Checkpoints: f.cat,
		Metrics: f.metrics, Logger: f.log, Now: clk.Now,
	})
	require.NoError(t, err)
	start(t, tl)
	assert.Zero(t, tl.Lag(), "nothing applied, nothing waiting")

	at := clk.Now().Add(-10 * time.Second)
	src.batches <- cdc.Batch{Changes: []cdc.Change{{Key: "a", Op: cdc.OpInsert, At: at}}, Position: position(1), At: at}
	eventually(t, "the batch applied", func() bool { return appliedOf(t, f.cat) == 1 })
	assert.Equal(t, 10*time.Second, tl.Lag(), "behind: now minus the newest applied change")
	assert.EqualValues(t, 10, metric(t, f.reg, "tandem_cdc_lag_seconds", map[string]string{"direction": "forward"}))

	src.batches <- cdc.Batch{Position: position(2), CaughtUp: true, At: clk.Now()}
	eventually(t, "caught up", func() bool { return tl.Lag() == 0 })
	s, err := f.cat.CDCStream(context.Background(), "users-test", cdc.PathForward)
	require.NoError(t, err)
	assert.Equal(t, position(2), cdc.Position(s.Position), "an empty batch moves the checkpoint")
	assert.True(t, at.Equal(s.At), "an empty batch keeps the newest change's time: %s", s.At)
}

// TestTailerRefusesANewerCheckpoint: a checkpoint of a newer format is neither read nor
// overwritten.
func TestTailerRefusesANewerCheckpoint(t *testing.T) {
	f := newCSFixture(t)
	tl := f.tailer(t, shadow.Forward)
	_, err := tl.Prepare(context.Background())
	require.NoError(t, err)
	meta := client.Database(f.cat.Database())
	_, err = meta.Collection("cdc_streams").UpdateOne(context.Background(), bson.D{{Key: "_id", Value: "users-test/forward-cdc"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "format", Value: catalog.CDCFormat + 1}}}})
	require.NoError(t, err)
	err = tl.Run(context.Background())
	require.ErrorIs(t, err, catalog.ErrCDCFormatTooNew)
}

// TestTailerRefusedToken: a checkpoint whose resume token the server refuses
// (InvalidResumeToken) stops the path in history_lost, with the resync command.
func TestTailerRefusedToken(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	bad, err := bson.Marshal(bson.D{{Key: "token", Value: bson.D{{Key: "_data", Value: "not-a-token"}}}})
	require.NoError(t, err)
	_, mine, err := f.cat.StartCDCStream(ctx, "users-test", cdc.PathForward, "test", bad)
	require.NoError(t, err)
	require.True(t, mine)
	err = f.tailer(t, shadow.Forward).Run(ctx)
	require.ErrorIs(t, err, cdc.ErrHistoryLost)
	assert.Contains(t, err.Error(), "refuses the checkpoint's resume token")
	s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	assert.Equal(t, catalog.CDCHistoryLost, s.State)
}

// leasedTailer is a forward tailer of f with the catalog's lease and metrics of its own.
func (f *csFixture) leasedTailer(t *testing.T, lease time.Duration) (*cdc.Tailer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	src, err := cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: f.oldColl, Poll: 20 * time.Millisecond, Logger: f.log})
	require.NoError(t, err)
	tl, err := cdc.NewTailer(cdc.TailerConfig{
		Migration: "users-test", Direction: shadow.Forward, Source: src, Engine: f.engine, Checkpoints: f.cat,
		Leases: f.cat, Lease: lease, Metrics: cdc.NewTailerMetrics(reg), Logger: f.log,
	})
	require.NoError(t, err)
	return tl, reg
}

func (f *csFixture) insert(t *testing.T, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, err := f.oldColl.InsertOne(context.Background(), oldDoc(id, 1))
		require.NoError(t, err)
	}
}

// TestTailerLeaseElectsOne runs two tailers of one path: one holds the lease and converges, the
// other waits and applies nothing; when the holder stops, the other takes over from its
// checkpoint and goes on.
func TestTailerLeaseElectsOne(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	first, firstReg := f.leasedTailer(t, 2*time.Second)
	r1 := start(t, first)
	eventually(t, "the first tailer holds the lease", func() bool {
		_, found, err := f.cat.NewestCDCLease(ctx, "users-test", cdc.PathForward)
		require.NoError(t, err)
		return found
	})
	second, secondReg := f.leasedTailer(t, 2*time.Second)
	start(t, second)
	f.insert(t, "a1", "a2", "a3")
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	eventually(t, "3 changes checkpointed", func() bool { return appliedOf(t, f.cat) == 3 })
	assert.EqualValues(t, 3, metric(t, firstReg, "tandem_cdc_changes_total", nil))
	assert.Zero(t, metric(t, secondReg, "tandem_cdc_changes_total", nil), "the waiting tailer applied changes")

	require.NoError(t, r1.stop(t)) // releases the lease
	f.insert(t, "b1", "b2")
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	eventually(t, "5 changes checkpointed", func() bool { return appliedOf(t, f.cat) == 5 })
	assert.EqualValues(t, 2, metric(t, secondReg, "tandem_cdc_changes_total", nil), "the second resumed from the first's checkpoint")
	l, _, err := f.cat.NewestCDCLease(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	assert.EqualValues(t, 2, l.Generation)
}

// TestTailerLeaseTakesOverACrashedHolder: a lease whose holder stopped renewing (a crash) is
// taken over once it expires.
func TestTailerLeaseTakesOverACrashedHolder(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	now := time.Now()
	require.NoError(t, f.cat.ClaimCDCLease(ctx, catalog.CDCLease{Migration: "users-test", Path: cdc.PathForward, Generation: 1,
		Owner: "crashed", ClaimedAt: now, ExpiresAt: now.Add(time.Second)}))
	tl, _ := f.leasedTailer(t, 2*time.Second)
	start(t, tl)
	f.insert(t, "c1")
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)
	l, _, err := f.cat.NewestCDCLease(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	assert.EqualValues(t, 2, l.Generation)
	assert.False(t, l.ClaimedAt.Before(now.Add(time.Second)), "claimed before the crashed holder's lease expired")
}

// TestTailerLeaseFence: a holder whose lease was taken over stops before its next checkpoint.
func TestTailerLeaseFence(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	tl, _ := f.leasedTailer(t, 2*time.Second)
	r := start(t, tl)
	f.insert(t, "d1")
	eventually(t, "1 change checkpointed", func() bool { return appliedOf(t, f.cat) == 1 })
	l, _, err := f.cat.NewestCDCLease(ctx, "users-test", cdc.PathForward)
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, f.cat.ClaimCDCLease(ctx, catalog.CDCLease{Migration: "users-test", Path: cdc.PathForward, Generation: l.Generation + 1,
		Owner: "usurper", ClaimedAt: now, ExpiresAt: now.Add(time.Hour)}))
	f.insert(t, "d2")
	err = r.wait(t)
	require.ErrorIs(t, err, cdc.ErrLeaseLost)
	assert.EqualValues(t, 1, appliedOf(t, f.cat), "the stale holder moved the checkpoint")
}

// drainTailer is f's reverse tailer in drain mode (UntilCaughtUp).
func (f *csFixture) drainTailer(t *testing.T) *cdc.Tailer {
	t.Helper()
	src, err := cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: f.newColl, Poll: 20 * time.Millisecond, Logger: f.log})
	require.NoError(t, err)
	tl, err := cdc.NewTailer(cdc.TailerConfig{
		Migration: "users-test", Direction: shadow.Reverse, Source: src, Engine: f.engine, Checkpoints: f.cat,
		UntilCaughtUp: true, Name: "reverse-cdc-drain", Metrics: f.metrics, Logger: f.log,
	})
	require.NoError(t, err)
	return tl
}

// TestTailerDrain: after the reverse path stopped (a rollback), a drain converges what new's
// stream still holds and returns nil once caught up; a path that never applied a change has
// nothing to drain.
func TestTailerDrain(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	_, err := f.newColl.InsertOne(ctx, newDoc("before", 1))
	require.NoError(t, err)
	drain := f.drainTailer(t)
	assert.Equal(t, "reverse-cdc-drain", drain.Name())
	_, err = drain.Prepare(ctx)
	require.NoError(t, err)
	require.NoError(t, drain.Run(ctx), "nothing to drain")
	n, err := f.oldColl.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	require.Zero(t, n, "a drain of a path that never ran converged something")

	r := start(t, f.tailer(t, shadow.Reverse))
	_, err = f.newColl.InsertOne(ctx, newDoc("during", 2))
	require.NoError(t, err)
	eventually(t, "the reverse path applied a change", func() bool {
		s, err := f.cat.CDCStream(ctx, "users-test", cdc.PathReverse)
		require.NoError(t, err)
		return s.Applied > 0
	})
	require.NoError(t, r.stop(t)) // the rollback
	_, err = f.newColl.InsertOne(ctx, newDoc("after-rollback", 3))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- f.drainTailer(t).Run(ctx) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("the drain did not return")
	}
	var got bson.D
	require.NoError(t, f.oldColl.FindOne(ctx, bson.D{{Key: "_id", Value: "after-rollback"}}).Decode(&got), "the drain converged the write made after the reverse path stopped")
}

// gatedAppender is a fake journal (cdc.Appender) whose Append waits for the test to answer
// each call, so that a test sees the tailer between its publish and the acknowledgement.
type gatedAppender struct {
	calls   chan []adapters.JournalEntry
	answers chan error
}

func (g *gatedAppender) Append(ctx context.Context, entries ...adapters.JournalEntry) error {
	select {
	case g.calls <- entries:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-g.answers:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestTailerPublishesThenCheckpoints: with a Publisher the tailer hands a batch's keys to the
// journal and converges nothing itself; the position is saved only once the journal
// acknowledged the batch, and a refused publish leaves the checkpoint where it was (the batch
// comes again). The real-broker version is cmd/tandem's TestRunPublishesToTheJournal.
func TestTailerPublishesThenCheckpoints(t *testing.T) {
	f := newCSFixture(t)
	journal := &gatedAppender{calls: make(chan []adapters.JournalEntry), answers: make(chan error)}
	pub, err := cdc.NewPublisher(journal, "users-test", "app.users")
	require.NoError(t, err)
	_, err = cdc.NewTailer(cdc.TailerConfig{Migration: "users-test", Direction: shadow.Reverse, Source: &fakeSource{},
		Publisher: pub, Checkpoints: f.cat})
	require.ErrorContains(t, err, "only the forward path publishes")

	src := &fakeSource{batches: make(chan cdc.Batch)}
	tl, err := cdc.NewTailer(cdc.TailerConfig{Migration: "users-test", Direction: shadow.Forward, Source: src,
		Publisher: pub, Checkpoints: f.cat, Metrics: f.metrics, Logger: f.log})
	require.NoError(t, err)
	r := start(t, tl)
	before := appliedOf(t, f.cat)
	batch := cdc.Batch{Changes: []cdc.Change{{Key: "a", Op: cdc.OpInsert}, {Key: "b", Op: cdc.OpDelete}}, Position: position(1)}
	src.batches <- batch
	entries := <-journal.calls
	require.Len(t, entries, 2)
	assert.Equal(t, "a", entries[0].Key)
	assert.Equal(t, "delete", entries[1].Op)
	assert.Equal(t, before, appliedOf(t, f.cat), "the checkpoint waits for the acknowledgement")
	journal.answers <- errors.New("not acknowledged")
	require.ErrorContains(t, r.wait(t), "not acknowledged")
	assert.Equal(t, before, appliedOf(t, f.cat), "a refused publish does not move the checkpoint")

	r = start(t, tl)
	src.batches <- batch // the source delivers from the checkpoint again
	<-journal.calls
	journal.answers <- nil
	eventually(t, "the acknowledged batch checkpointed", func() bool { return appliedOf(t, f.cat) == before+2 })
	assert.EqualValues(t, 2, metric(t, f.reg, "tandem_cdc_converged_total", map[string]string{"result": cdc.ResultPublished}))
	assert.Zero(t, metric(t, f.reg, "tandem_cdc_converged_total", map[string]string{"result": "upserted"}), "the tailer converged nothing itself")
	require.NoError(t, r.stop(t))
}
