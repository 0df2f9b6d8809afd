package cdc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

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
