package proxy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/tandemdb/tandem/proxy/proxytest"
)

// topologyWatcher records every server address and kind a driver's monitoring reports.
type topologyWatcher struct {
	mu    sync.Mutex
	addrs map[string]string // address → last kind
	kind  string            // last topology kind
}

func (w *topologyWatcher) monitor() *event.ServerMonitor {
	w.addrs = map[string]string{}
	return &event.ServerMonitor{TopologyDescriptionChanged: func(e *event.TopologyDescriptionChangedEvent) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.kind = e.NewDescription.Kind
		for _, s := range e.NewDescription.Servers {
			w.addrs[s.Addr.String()] = s.Kind
		}
	}}
}

func (w *topologyWatcher) snapshot() (string, map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]string, len(w.addrs))
	for k, v := range w.addrs {
		m[k] = v
	}
	return w.kind, m
}

// TestClientSeesOneRouter checks that a driver connected to the proxy sees one mongos at the
// proxy's address and never learns the upstream's hosts, for a standalone (FerretDB) and for a
// replica-set primary (the fake, which lists its own address in hosts, primary and me).
func TestClientSeesOneRouter(t *testing.T) {
	rs, err := proxytest.StartFake(proxytest.AsReplicaSetPrimary("rs0"))
	require.NoError(t, err)
	t.Cleanup(rs.Close)

	for _, tc := range []struct {
		name     string
		upstream string
		hidden   string
	}{
		{"standalone FerretDB", ferret.URI(), ferret.URI()},
		{"replica set primary", rs.URI(), rs.Addr()},
		{"replica set primary named in the upstream URI", rs.URI() + "?replicaSet=rs0", rs.Addr()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := serveProxy(t, tc.upstream)
			var w topologyWatcher
			client := connect(t, p.uri, options.Client().SetServerMonitor(w.monitor()))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, client.Ping(ctx, readpref.Primary()))

			var hello bson.M
			require.NoError(t, client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello))
			assert.Equal(t, "isdbgrid", hello["msg"])
			for _, k := range []string{"hosts", "setName", "primary", "me", "setVersion", "electionId"} {
				assert.NotContains(t, hello, k)
			}
			assert.Contains(t, hello, "maxWireVersion")
			assert.Contains(t, hello, "logicalSessionTimeoutMinutes", "sessions and retryable writes need it")

			kind, addrs := w.snapshot()
			assert.Equal(t, "Sharded", kind)
			assert.Equal(t, map[string]string{p.addr: "Mongos"}, addrs, "the driver knows only the proxy")
			for a := range addrs {
				assert.NotContains(t, tc.hidden, a)
			}

			// The proxy's own monitor finds the primary in the background; until then it dials
			// the URI's first host, which is the same server here.
			require.Eventually(t, func() bool { _, known := p.upstream.Target(); return known }, 10*time.Second, 5*time.Millisecond)
			target, _ := p.upstream.Target()
			assert.Contains(t, tc.hidden, target, "the proxy pins connections to the primary")
		})
	}
}

// TestSessionsAndRetryableWritesStayEnabled runs a write in an explicit session with retryable
// writes on: the driver only sends lsid and txnNumber when the handshake allowed it.
func TestSessionsAndRetryableWritesStayEnabled(t *testing.T) {
	p := serveProxy(t, ferret.URI())
	var mu sync.Mutex
	var sent []bson.Raw
	cmdMon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		if e.CommandName == "insert" {
			mu.Lock()
			sent = append(sent, append(bson.Raw(nil), e.Command...))
			mu.Unlock()
		}
	}}
	client := connect(t, p.uri, options.Client().SetMonitor(cmdMon).SetRetryWrites(true))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	coll := client.Database("sessions").Collection("c")
	t.Cleanup(func() { _ = client.Database("sessions").Drop(context.Background()) })
	err := client.UseSession(ctx, func(sc context.Context) error {
		_, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: "s1"}})
		return err
	})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, sent, 1)
	_, err = sent[0].LookupErr("lsid")
	assert.NoError(t, err, "the driver sent a session id")
	_, err = sent[0].LookupErr("txnNumber")
	assert.NoError(t, err, "the driver made the write retryable")
	n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: "s1"}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

// TestCompressedTraffic negotiates each compressor through the proxy with an upstream that
// accepts it (FerretDB does not compress), and checks that requests reach the upstream
// compressed and replies reach the driver.
func TestCompressedTraffic(t *testing.T) {
	for _, comp := range []string{"snappy", "zlib", "zstd"} {
		t.Run(comp, func(t *testing.T) {
			fake, err := proxytest.StartFake(proxytest.WithCompressors(comp))
			require.NoError(t, err)
			t.Cleanup(fake.Close)
			p := serveProxy(t, fake.URI())
			client := connect(t, p.uri, options.Client().SetCompressors([]string{comp}))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for i := 0; i < 5; i++ {
				var got bson.M
				require.NoError(t, client.Database("app").Collection("users").FindOne(ctx, bson.D{{Key: "_id", Value: "k1"}}).Decode(&got))
				assert.Equal(t, "k1", got["_id"])
			}
			assert.GreaterOrEqual(t, fake.CompressedRequests(), int64(5))
			assert.Equal(t, 5.0, metric(t, p.registry, "tandem_proxy_requests_total", "command", "find"), "compressed requests are decoded for metrics")
		})
	}
}

// TestUnacknowledgedWrites sends w:0 inserts (OP_MSG moreToCome, no reply) and then a normal
// command: the proxy must expect no reply for the former and exactly one for the latter.
func TestUnacknowledgedWrites(t *testing.T) {
	p := serveProxy(t, ferret.URI())
	client := connect(t, p.uri)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db := client.Database("unack")
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	coll := db.Collection("c", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
	for i := 0; i < 5; i++ {
		res, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("w0-%d", i)}})
		require.NoError(t, err)
		assert.False(t, res.Acknowledged)
	}
	require.Eventually(t, func() bool {
		n, err := db.Collection("c").CountDocuments(ctx, bson.D{})
		return err == nil && n == 5
	}, 10*time.Second, 50*time.Millisecond)
}

// TestAuthenticationPassesThrough: the proxy never answers authentication itself; the SASL
// conversation reaches the upstream on the client's pinned connection. FerretDB on SQLite
// accepts PLAIN and refuses SCRAM, so both outcomes must be the same direct and proxied.
func TestAuthenticationPassesThrough(t *testing.T) {
	p := serveProxy(t, ferret.URI())
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-1"} {
		t.Run(mech, func(t *testing.T) {
			cred := options.Client().SetAuth(options.Credential{Username: "alice", Password: "pw", AuthMechanism: mech})
			ping := func(uri string) error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				return connect(t, uri, cred).Ping(ctx, nil)
			}
			direct, proxied := ping(ferret.URI()), ping(p.uri)
			if direct == nil {
				assert.NoError(t, proxied)
				return
			}
			require.Error(t, proxied)
			assert.Contains(t, direct.Error(), "Unsupported authentication mechanism")
			assert.Contains(t, proxied.Error(), "Unsupported authentication mechanism", "the refusal comes from the upstream")
		})
	}
	assert.Positive(t, metric(t, p.registry, "tandem_proxy_requests_total", "command", "saslStart"))
}

// TestSCRAMThroughTheProxy authenticates with SCRAM-SHA-256 (the driver's client side against
// the fake's server side from xdg-go/scram, since FerretDB on SQLite has no SCRAM): the
// conversation's steps must all reach the upstream connection that started it, and that
// connection then carries the client's commands.
func TestSCRAMThroughTheProxy(t *testing.T) {
	fake, err := proxytest.StartFake(proxytest.WithSCRAMUser("alice", "s3cret"))
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	p := serveProxy(t, fake.URI())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	find := func(uri, password string) error {
		cred := options.Client().SetAuth(options.Credential{Username: "alice", Password: password, AuthMechanism: "SCRAM-SHA-256"})
		return connect(t, uri, cred).Database("app").Collection("c").FindOne(ctx, bson.D{}).Err()
	}
	assert.NoError(t, find(fake.URI(), "s3cret"), "direct")
	assert.NoError(t, find(p.uri, "s3cret"), "through the proxy")
	for _, uri := range []string{fake.URI(), p.uri} {
		err := find(uri, "wrong")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "AuthenticationFailed")
	}
	unauthenticated := connect(t, p.uri).Database("app").Collection("c").FindOne(ctx, bson.D{}).Err()
	require.Error(t, unauthenticated)
	assert.Contains(t, unauthenticated.Error(), "Unauthorized")
	assert.Positive(t, metric(t, p.registry, "tandem_proxy_requests_total", "command", "saslContinue"))
}
