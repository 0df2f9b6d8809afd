package backfill_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
)

// TestCatalogOutage keeps the catalog on a FerretDB of its own, stops that server in the middle
// of the copy for three seconds (longer than the 2s lease) and starts it again on the same data:
// the copy waits, resumes and ends with a full copy and exact counts.
func TestCatalogOutage(t *testing.T) {
	e := newEnv(t, "")
	e.seed(t, 600)
	ctx := context.Background()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	start := func() *embedmongo.Server {
		s, err := embedmongo.Start(ctx, embedmongo.Options{Dir: dir, Addr: addr})
		require.NoError(t, err)
		return s
	}
	srv := start()
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()).SetServerSelectionTimeout(time.Second).SetTimeout(2 * time.Second))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	e.cat, err = catalog.Open(ctx, c)
	require.NoError(t, err)

	cfg := e.config()
	cfg.Rate = 150
	done := make(chan error, 1)
	var sum backfill.Summary
	go func() {
		var err error
		sum, err = backfill.Run(ctx, cfg)
		done <- err
	}()
	waitFor(t, 20*time.Second, func() bool { return count(t, e.dst) >= 100 })
	srv.Stop()
	at := count(t, e.dst)
	time.Sleep(3 * time.Second)
	t.Logf("catalog down for 3s: the target went from %d to %d documents meanwhile", at, count(t, e.dst))
	srv = start()
	t.Cleanup(srv.Stop)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the backfill did not finish after the catalog came back")
	}
	e.checkCopy(t)
	p, err := backfill.Status(ctx, e.cat, e.migration)
	require.NoError(t, err)
	assert.Equal(t, backfill.StateDone, p.State)
	assert.Equal(t, int64(600), p.Copied)
	assert.Equal(t, int64(600), sum.Progress.Copied)
}
