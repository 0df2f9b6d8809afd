package proxy_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/proxy/proxytest"
)

// writerDouble is a test double of shadow.Writer (the real one is tested in package shadow and,
// through the proxy, in migrate_test.go): it records the keys it is handed, can make Sync hang
// until its context ends as a converge to an unresponsive new store would, and fails the test
// when it is called after Close.
type writerDouble struct {
	t         *testing.T
	blockSync bool
	entered   chan struct{} // a blocking Sync has started
	ended     chan error    // a blocking Sync has returned, with its context's error

	mu     sync.Mutex
	closed bool
	async  []string
}

func newWriterDouble(t *testing.T, blockSync bool) *writerDouble {
	return &writerDouble{t: t, blockSync: blockSync, entered: make(chan struct{}, 10), ended: make(chan error, 10)}
}

func (w *writerDouble) called(what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.t.Errorf("%s after the writer was closed", what)
	}
}

func (w *writerDouble) Async(keys []adapters.Key, op string) {
	w.called("Async " + op)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		w.async = append(w.async, adapters.KeyString(k))
	}
}

func (w *writerDouble) Sync(ctx context.Context, _ []adapters.Key, op string) error {
	w.called("Sync " + op)
	if !w.blockSync {
		return nil
	}
	w.entered <- struct{}{}
	<-ctx.Done()
	w.ended <- ctx.Err()
	return ctx.Err()
}

func (w *writerDouble) Unkeyed(context.Context, string, bson.Raw) { w.called("Unkeyed") }

// Close is what the proxy's owner does once Shutdown has returned.
func (w *writerDouble) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

func (w *writerDouble) asyncKeys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.async...)
}

// migratedFake is a proxy in front of the fake upstream with one migration on app.users.
func migratedFake(t *testing.T, phase string, m *proxy.Migration) *running {
	t.Helper()
	fake, err := proxytest.StartFake()
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	fs := &flagSwitch{}
	fs.set(flags.Values{Phase: phase, ReadSource: flags.ReadOld})
	m.Name, m.Database, m.Collection = "users-v2", "app", "users"
	routes, err := proxy.NewRoutes(fs, "", m)
	require.NoError(t, err)
	return serveProxy(t, fake.URI(), proxy.WithRoutes(routes))
}

// TestConnectionContextEndsSlowConverges: a synchronous converge or a pre-read that hangs (the
// new or old store does not answer, Timeout is a minute) is stopped at once, with
// context.Canceled, when the client hangs up or the proxy closes, rather than holding the
// connection, and the shutdown, until its timeout.
func TestConnectionContextEndsSlowConverges(t *testing.T) {
	insert := bson.D{{Key: "insert", Value: "users"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "k1"}}}}, {Key: "$db", Value: "app"}}
	unkeyedUpdate := bson.D{{Key: "update", Value: "users"}, {Key: "updates", Value: bson.A{bson.D{
		{Key: "q", Value: bson.D{{Key: "name", Value: "Ada"}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}}}}}, {Key: "$db", Value: "app"}}
	for _, tc := range []struct {
		name    string
		request bson.D
		preRead bool
		end     func(p *running, r *rawConn)
	}{
		{"client hangs up during a synchronous converge", insert, false, func(_ *running, r *rawConn) { r.Close() }},
		{"Close during a synchronous converge", insert, false, func(p *running, _ *rawConn) { _ = p.server.Close() }},
		{"Shutdown deadline during a synchronous converge", insert, false, func(p *running, _ *rawConn) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_ = p.server.Shutdown(ctx)
		}},
		{"Close during a pre-read", unkeyedUpdate, true, func(p *running, _ *rawConn) { _ = p.server.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWriterDouble(t, !tc.preRead)
			m := &proxy.Migration{Writer: w, Timeout: time.Minute}
			if tc.preRead {
				m.PreRead = func(ctx context.Context, _ bson.Raw, _ int) ([]adapters.Key, error) {
					w.entered <- struct{}{}
					<-ctx.Done()
					w.ended <- ctx.Err()
					return nil, ctx.Err()
				}
			}
			p := migratedFake(t, flags.PhaseDual, m)
			r := dialRaw(t, p.addr)
			r.send(0, tc.request)
			select {
			case <-w.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the converge or pre-read never started")
			}
			tc.end(p, r)
			select {
			case err := <-w.ended:
				assert.ErrorIs(t, err, context.Canceled, "ended by the connection's context, not by Timeout")
			case <-time.After(10 * time.Second):
				t.Fatal("still running 10s after the connection ended (Timeout is a minute)")
			}
		})
	}
}

// TestShutdownWaitsForDeferredConverges: the keys of an unacknowledged write or of a write in a
// transaction converge 0.5s after it was forwarded. A Shutdown or Close in between hands them
// to the writer before it returns, and leaves no timer to call the writer once its owner has
// closed it.
func TestShutdownWaitsForDeferredConverges(t *testing.T) {
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	for _, write := range []struct {
		name  string
		flags wiremessage.MsgFlag
		cmd   bson.D
	}{
		{"w:0", wiremessage.MoreToCome, bson.D{{Key: "insert", Value: "users"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "k1"}}}},
			{Key: "writeConcern", Value: bson.D{{Key: "w", Value: 0}}}, {Key: "$db", Value: "app"}}},
		{"in a transaction", 0, bson.D{{Key: "insert", Value: "users"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: "k1"}}}},
			{Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(1)}, {Key: "startTransaction", Value: true}, {Key: "autocommit", Value: false},
			{Key: "$db", Value: "app"}}},
	} {
		for _, stop := range []struct {
			name string
			fn   func(*proxy.Server) error
		}{
			{"Shutdown", func(s *proxy.Server) error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return s.Shutdown(ctx)
			}},
			{"Close", (*proxy.Server).Close},
		} {
			t.Run(write.name+"/"+stop.name, func(t *testing.T) {
				w := newWriterDouble(t, false)
				p := migratedFake(t, flags.PhaseDual, &proxy.Migration{Writer: w})
				r := dialRaw(t, p.addr)
				r.send(write.flags, write.cmd)
				if write.flags&wiremessage.MoreToCome == 0 {
					r.read()
				}
				// Requests are handled in order: once the ping is answered the write has been
				// forwarded and its converge deferred.
				r.send(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
				r.read()
				require.Empty(t, w.asyncKeys(), "not converged yet: the test must stop the proxy within 0.5s")

				err := stop.fn(p.server)
				assert.True(t, err == nil || errors.Is(err, context.Canceled), "%v", err)
				w.Close()
				assert.Equal(t, []string{`"k1"`}, w.asyncKeys(), "the key reached the writer before the proxy stopped")
				// A timer left behind would fire 0.5s after the write; the double fails the
				// test if it is called now.
				time.Sleep(time.Second)
			})
		}
	}
}
