package verify_test

import (
	"context"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/verify"
)

// TestStoreOutageResumes reaches the new store through a TCP relay that the test cuts after
// the third batch: the run gives up after its retries, its state says which partitions it did
// not cover and why; once the store is back, the next Run resumes the same run from its
// checkpoints and finds exactly what was planted.
func TestStoreOutageResumes(t *testing.T) {
	f := newFixture(t)
	want := f.plant(t, 300)
	ctx := context.Background()
	u, err := url.Parse(serverURI)
	require.NoError(t, err)
	relay := testenv.StartRelay(t, u.Host)
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + relay.Addr + "/").
		SetServerSelectionTimeout(time.Second).SetTimeout(20 * time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	f.new = adapters.NewMongoStore(c.Database(f.db).Collection("users_v2"))

	cfg := f.config()
	cfg.Batch, cfg.Retries = 20, 2
	cfg.CheckpointEvery = time.Nanosecond // a checkpoint after every batch
	var batches atomic.Int64
	verify.SetAfterBatch(&cfg, func() {
		if batches.Add(1) == 3 {
			relay.Cut(true)
		}
	})
	sum, err := verify.Run(ctx, cfg)
	require.Error(t, err, "the new store is unreachable")
	assert.False(t, sum.Clean)
	assert.NotEmpty(t, sum.Aborted)
	st := f.state(t)
	assert.False(t, st.FullPassDone)
	require.NotEmpty(t, st.Uncovered, "the state names what was not covered")
	assert.NotEmpty(t, st.LastError)
	var reasons []string
	for _, u := range st.Uncovered {
		reasons = append(reasons, u.Reason)
	}
	t.Logf("uncovered: %+v", st.Uncovered)
	assert.Contains(t, strings.Join(reasons, "\n"), "new store", "the reason names the store that failed")
	compared := st.Compared
	assert.Positive(t, compared, "the batches before the outage are kept")

	relay.Cut(false)
	verify.SetAfterBatch(&cfg, nil)
	sum, err = verify.Run(ctx, cfg)
	require.NoError(t, err)
	st = f.state(t)
	assert.Equal(t, "run-000001", st.RunID, "the same run, resumed")
	assert.True(t, st.FullPassDone)
	assert.Empty(t, st.Uncovered)
	assert.Equal(t, int64(300+300/50), st.Compared, "each key compared once: the resumed partitions went on from their checkpoints")
	f.assertFoundExactly(t, want)
	assert.Equal(t, int64(len(want)), sum.Mismatches)
}

// TestContinuous runs the runtime's continuous verification on a converged migration: after
// its full pass it is clean and records drift; a corruption announced as a change is
// confirmed by the next generation, one nobody announces is found by the rolling sample;
// drift, the gauges and the gate show both.
func TestContinuous(t *testing.T) {
	f := newFixture(t)
	f.seed(t, 60)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	changes := &verify.ChangeList{}
	cfg := f.config()
	cfg.Changes, cfg.Metrics = changes, verify.NewMetrics(reg)
	cfg.SampleRate, cfg.DriftEvery, cfg.Poll, cfg.RecheckEvery = 200, 100*time.Millisecond, 50*time.Millisecond, 200*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- verify.Continuous(ctx, cfg) }()

	waitFor(t, time.Minute, "a clean full pass", func() bool {
		st, err := f.cat.VerifyState(ctx, migration)
		return err == nil && st.FullPassDone && st.Clean()
	})
	waitFor(t, time.Minute, "drift points", func() bool {
		d, err := f.cat.VerifyDrift(ctx, migration, "", time.Time{})
		return err == nil && len(d) > 0
	})
	assert.True(t, f.verificationGate(t).OK, f.verificationGate(t).Detail)
	st := f.state(t)
	assert.Equal(t, verify.ModeContinuous, st.Mode)
	assert.True(t, st.Finished.IsZero(), "a continuous run never finishes")

	announced, silent := userID(7), userID(41)
	require.NoError(t, f.new.Upsert(ctx, setField(f.forward(t, user(7)), "schema_version", int32(9))))
	changes.Add(announced)
	waitFor(t, time.Minute, "the announced corruption confirmed", func() bool {
		m, ok, err := f.cat.VerifyMismatchOf(ctx, migration, st.RunID, adapters.KeyString(announced))
		return err == nil && ok && m.State == catalog.MismatchConfirmed
	})
	require.NoError(t, f.new.Delete(ctx, silent))
	waitFor(t, time.Minute, "the silent corruption found by the sample", func() bool {
		m, ok, err := f.cat.VerifyMismatchOf(ctx, migration, st.RunID, adapters.KeyString(silent))
		return err == nil && ok && m.State == catalog.MismatchConfirmed
	})
	waitFor(t, time.Minute, "drift of two confirmed mismatches", func() bool {
		d, err := f.cat.VerifyDrift(ctx, migration, "", time.Time{})
		return err == nil && len(d) > 0 && d[len(d)-1].Confirmed == 2
	})
	assert.Equal(t, 2.0, testutil.ToFloat64(cfg.Metrics.Confirmed(migration)))
	st = f.state(t)
	assert.Equal(t, int64(1), st.Confirmed.Differing)
	assert.Equal(t, int64(1), st.Confirmed.Missing)
	assert.Positive(t, st.Sampled)
	g := f.verificationGate(t)
	assert.False(t, g.OK)
	assert.Contains(t, g.Detail, "2 confirmed mismatches outstanding")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("Continuous did not stop")
	}
}
