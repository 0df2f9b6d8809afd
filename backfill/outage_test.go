package backfill_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/testenv"
)

// TestCatalogOutage reaches the catalog through a TCP relay that the test cuts in the middle of
// the copy, for longer than the lease, and then restores: the copy waits, resumes and ends with
// a full copy and exact counts.
func TestCatalogOutage(t *testing.T) {
	e := newEnv(t, "")
	e.seed(t, 400)
	ctx := context.Background()
	u, err := url.Parse(serverURI)
	require.NoError(t, err)
	relay := testenv.StartRelay(t, u.Host)
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + relay.Addr + "/").SetServerSelectionTimeout(time.Second).SetTimeout(2 * time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	e.cat, err = catalog.Open(ctx, c, catalog.WithDatabase(e.db+"_meta"))
	require.NoError(t, err)

	cfg := e.config()
	cfg.Rate = 100
	done := make(chan error, 1)
	var sum backfill.Summary
	go func() {
		var err error
		sum, err = backfill.Run(ctx, cfg)
		done <- err
	}()
	waitFor(t, time.Minute, func() bool { return count(t, e.dst) >= 100 })
	relay.Cut(true)
	at := count(t, e.dst)
	time.Sleep(testLease + time.Second)
	t.Logf("catalog unreachable for %s: the target went from %d to %d documents meanwhile", testLease+time.Second, at, count(t, e.dst))
	relay.Cut(false)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(3 * time.Minute):
		t.Fatal("the backfill did not finish after the catalog came back")
	}
	e.checkCopy(t)
	p, err := backfill.Status(ctx, e.cat, e.migration)
	require.NoError(t, err)
	assert.Equal(t, backfill.StateDone, p.State)
	assert.Equal(t, int64(400), p.Copied)
	assert.Equal(t, int64(400), sum.Progress.Copied)
}
