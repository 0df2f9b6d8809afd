package backfill_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
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
	relay := startRelay(t, u.Host)
	c, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + relay.addr + "/").SetServerSelectionTimeout(time.Second).SetTimeout(2 * time.Second))
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
	relay.cut(true)
	at := count(t, e.dst)
	time.Sleep(testLease + time.Second)
	t.Logf("catalog unreachable for %s: the target went from %d to %d documents meanwhile", testLease+time.Second, at, count(t, e.dst))
	relay.cut(false)
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

// relay forwards TCP connections to an address until it is cut: then it drops every
// connection and refuses new ones.
type relay struct {
	addr string
	mu   sync.Mutex
	down bool
	live map[net.Conn]struct{}
}

func startRelay(t *testing.T, upstream string) *relay {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	r := &relay{addr: l.Addr().String(), live: map[net.Conn]struct{}{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			down := r.down
			r.mu.Unlock()
			if down {
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			r.track(c, up)
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	return r
}

func (r *relay) track(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		r.live[c] = struct{}{}
	}
}

// cut drops every connection and refuses new ones (down), or accepts them again.
func (r *relay) cut(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
	if down {
		for c := range r.live {
			_ = c.Close()
		}
		r.live = map[net.Conn]struct{}{}
	}
}
