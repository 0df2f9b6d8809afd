package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/proxy/proxytest"
)

// TestGarbageClosesOnlyThatConnection sends bad frames on raw connections while a driver keeps
// working through the same proxy: each bad connection is closed, nothing else is disturbed.
func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	p := serveProxy(t, ferret.URI())
	client := connect(t, p.uri)
	coll := client.Database("garbage").Collection("c")
	t.Cleanup(func() { _ = client.Database("garbage").Drop(context.Background()) })

	var stop atomic.Bool
	worked := make(chan int)
	go func() {
		n := 0
		for i := 0; !stop.Load(); i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: time.Now().String() + string(rune('a'+i%26))}})
			cancel()
			if err != nil {
				t.Errorf("good client failed during garbage: %v", err)
				break
			}
			n++
		}
		worked <- n
	}()

	header := func(length uint32, op wiremessage.OpCode) []byte {
		b := binary.LittleEndian.AppendUint32(nil, length)
		b = binary.LittleEndian.AppendUint32(b, 1)
		b = binary.LittleEndian.AppendUint32(b, 0)
		return binary.LittleEndian.AppendUint32(b, uint32(op))
	}
	bad := map[string][]byte{
		"HTTP request":      []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"oversized length":  header(48_000_001, wiremessage.OpMsg),
		"negative length":   header(0xfffffff0, wiremessage.OpMsg),
		"shorter than head": header(8, wiremessage.OpMsg),
		"unknown opcode":    append(header(20, 4242), 0, 0, 0, 0),
		"OP_MSG no body":    append(header(20, wiremessage.OpMsg), 0, 0, 0, 0),
		"reply from client": append(header(36, wiremessage.OpReply), make([]byte, 20)...),
	}
	for name, frame := range bad {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, p.addr)
			_, err := r.Write(frame)
			require.NoError(t, err)
			r.expectClosed()
		})
	}
	t.Run("truncated frame then hang-up", func(t *testing.T) {
		r := dialRaw(t, p.addr)
		_, err := r.Write(header(100, wiremessage.OpMsg)[:10])
		require.NoError(t, err)
		require.NoError(t, r.Close())
	})
	stop.Store(true)
	assert.Positive(t, <-worked)
	assert.GreaterOrEqual(t, metric(t, p.registry, "tandem_proxy_errors_total", "kind", "bad_frame"), float64(len(bad)))

	// The proxy still serves new connections.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, connect(t, p.uri).Ping(ctx, nil))
}

// TestUpstreamDownAndBack stops the upstream under a connected client: operations fail
// promptly with a clear error instead of hanging, and succeed again once the upstream returns
// at the same address, without restarting the proxy.
func TestUpstreamDownAndBack(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	store, err := embedmongo.Start(ctx, embedmongo.Options{Dir: dir})
	require.NoError(t, err)
	u, err := url.Parse(store.URI())
	require.NoError(t, err)
	addr := u.Host
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			store.Stop()
		}
	})

	p := serveProxy(t, store.URI())
	client := connect(t, p.uri, options.Client().SetServerSelectionTimeout(2*time.Second).SetRetryWrites(true))
	coll := client.Database("outage").Collection("c")
	opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = coll.InsertOne(opCtx, bson.D{{Key: "_id", Value: "before"}})
	cancel()
	require.NoError(t, err)

	store.Stop()
	stopped = true

	// A client operation fails; the context allows 20s, the driver gives up after its 2s
	// server selection timeout because the proxy answers at once.
	opCtx, cancel = context.WithTimeout(ctx, 20*time.Second)
	start := time.Now()
	err = coll.FindOne(opCtx, bson.D{{Key: "_id", Value: "before"}}).Err()
	cancel()
	require.Error(t, err)
	assert.Less(t, time.Since(start), 15*time.Second, "the error came from the driver's own timeout, not a hang: %v", err)

	// A raw client sees the reason in the reply itself.
	r := dialRaw(t, p.addr)
	r.send(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	rep := r.read()
	assert.Equal(t, 0.0, rep.doc["ok"])
	assert.Equal(t, int32(6), rep.doc["code"])
	assert.Equal(t, "HostUnreachable", rep.doc["codeName"])
	assert.Contains(t, rep.doc["errmsg"], addr)
	r.expectClosed()
	assert.Positive(t, metric(t, p.registry, "tandem_proxy_errors_total", "kind", "upstream_dial"))

	// The upstream returns at the same address with the same data.
	store2, err := embedmongo.Start(ctx, embedmongo.Options{Dir: dir, Addr: addr})
	require.NoError(t, err)
	t.Cleanup(store2.Stop)
	require.Eventually(t, func() bool {
		opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return coll.FindOne(opCtx, bson.D{{Key: "_id", Value: "before"}}).Err() == nil
	}, 60*time.Second, 200*time.Millisecond, "the proxy recovers by itself")
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key, and returns the paths
// and a pool that trusts it.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tandem test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLSBothWays serves TLS to the client and uses TLS to a FerretDB that listens with TLS,
// taking the upstream's TLS settings from its URI.
func TestTLSBothWays(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{TLSCertFile: certFile, TLSKeyFile: keyFile})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	upstreamURI := store.URI() + "&tlsCAFile=" + url.QueryEscape(certFile)

	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	p := serveProxy(t, upstreamURI, proxy.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))

	client := connect(t, p.uri, options.Client().SetTLSConfig(&tls.Config{RootCAs: pool}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	coll := client.Database("tls").Collection("c")
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "secure"}})
	require.NoError(t, err)
	var got bson.M
	require.NoError(t, coll.FindOne(ctx, bson.D{{Key: "_id", Value: "secure"}}).Decode(&got))
	assert.Equal(t, "secure", got["_id"])

	// A plain-text client gets nothing useful from a TLS listener.
	plain := connect(t, p.uri, options.Client().SetServerSelectionTimeout(time.Second))
	assert.Error(t, plain.Ping(ctx, nil))
	assert.Positive(t, metric(t, p.registry, "tandem_proxy_errors_total", "kind", "tls_handshake"))
}

// TestGracefulShutdownDrainsInFlightRequests starts a slow request, shuts the proxy down while
// it runs, and checks that its reply still arrives and that the listener is closed.
func TestGracefulShutdownDrainsInFlightRequests(t *testing.T) {
	fake, err := proxytest.StartFake()
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	p := serveProxy(t, fake.URI())

	r := dialRaw(t, p.addr)
	id := r.send(0, bson.D{{Key: proxytest.SleepCommand, Value: 500}, {Key: "$db", Value: "admin"}})
	require.Eventually(t, func() bool {
		return metric(t, p.registry, "tandem_proxy_requests_total", "command", "other") == 1
	}, 5*time.Second, 5*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- p.server.Shutdown(ctx) }()

	rep := r.read()
	assert.Equal(t, id, rep.responseTo)
	assert.Equal(t, 1.0, rep.doc["ok"])
	require.NoError(t, <-shutdownErr)
	r.expectClosed()
	_, err = net.DialTimeout("tcp", p.addr, time.Second)
	assert.Error(t, err, "no longer accepting")
}

// TestShutdownDeadlineClosesStuckConnections: when the drain outlives the caller's deadline the
// remaining connections are closed and the deadline's error returned.
func TestShutdownDeadlineClosesStuckConnections(t *testing.T) {
	fake, err := proxytest.StartFake()
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	p := serveProxy(t, fake.URI())
	r := dialRaw(t, p.addr)
	r.send(0, bson.D{{Key: proxytest.SleepCommand, Value: 5000}, {Key: "$db", Value: "admin"}})
	require.Eventually(t, func() bool {
		return metric(t, p.registry, "tandem_proxy_requests_total", "command", "other") == 1
	}, 5*time.Second, 5*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, p.server.Shutdown(ctx), context.DeadlineExceeded)
	r.expectClosed()
	assert.Equal(t, 1.0, metric(t, p.registry, "tandem_proxy_errors_total", "kind", "drain_timeout"))
}

// TestExhaustReplies: a request with exhaustAllowed gets a stream of replies, each answering
// the previous one, all forwarded; the connection then carries ordinary requests again.
func TestExhaustReplies(t *testing.T) {
	fake, err := proxytest.StartFake()
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	p := serveProxy(t, fake.URI())
	r := dialRaw(t, p.addr)

	id := r.send(wiremessage.ExhaustAllowed, bson.D{{Key: proxytest.StreamCommand, Value: 3}, {Key: "$db", Value: "admin"}})
	prev := id
	for k := 1; k <= 3; k++ {
		rep := r.read()
		assert.Equal(t, prev, rep.responseTo, "reply %d answers the previous message", k)
		assert.Equal(t, int64(k), rep.doc["i"])
		assert.Equal(t, k < 3, rep.flags&wiremessage.MoreToCome != 0, "moreToCome on all but the last reply")
		prev = rep.requestID
	}
	id = r.send(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	rep := r.read()
	assert.Equal(t, id, rep.responseTo)
	assert.Equal(t, 0.0, metric(t, p.registry, "tandem_proxy_errors_total", "kind", "unmatched_reply"))
}

// TestConnectionLimit refuses connections over the limit and accepts again below it.
func TestConnectionLimit(t *testing.T) {
	fake, err := proxytest.StartFake()
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	p := serveProxy(t, fake.URI(), proxy.WithMaxConns(1))

	first := dialRaw(t, p.addr)
	first.send(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	first.read()

	second := dialRaw(t, p.addr)
	second.expectClosed()
	assert.Equal(t, 1.0, metric(t, p.registry, "tandem_proxy_errors_total", "kind", "conn_limit"))

	require.NoError(t, first.Close())
	require.Eventually(t, func() bool {
		return metric(t, p.registry, "tandem_proxy_open_connections", "", "") == 0
	}, 5*time.Second, 10*time.Millisecond)
	third := dialRaw(t, p.addr)
	third.send(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	assert.Equal(t, 1.0, third.read().doc["ok"])
}

// TestIdleTimeout closes a silent connection but never one that awaits a reply.
func TestIdleTimeout(t *testing.T) {
	fake, err := proxytest.StartFake()
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	p := serveProxy(t, fake.URI(), proxy.WithIdleTimeout(200*time.Millisecond))

	busy := dialRaw(t, p.addr)
	id := busy.send(0, bson.D{{Key: proxytest.SleepCommand, Value: 800}, {Key: "$db", Value: "admin"}})
	idle := dialRaw(t, p.addr)
	idle.expectClosed()
	rep := busy.read()
	assert.Equal(t, id, rep.responseTo, "a slow request outlives the idle timeout")

	// A stream of replies with no request in between (as a streaming hello) is not idle.
	streaming := dialRaw(t, p.addr)
	streaming.send(wiremessage.ExhaustAllowed, bson.D{{Key: proxytest.StreamCommand, Value: 4}, {Key: "intervalMS", Value: 150}, {Key: "$db", Value: "admin"}})
	for k := 1; k <= 4; k++ {
		assert.Equal(t, int64(k), streaming.read().doc["i"])
	}
	assert.GreaterOrEqual(t, metric(t, p.registry, "tandem_proxy_errors_total", "kind", "idle_timeout"), 1.0)
}

// TestBadUpstreamURI rejects what the proxy cannot use, naming the problem.
func TestBadUpstreamURI(t *testing.T) {
	for _, uri := range []string{
		"http://127.0.0.1:27017/",
		"mongodb://",
		"mongodb://u:secret@127.0.0.1:27017/?loadBalanced=true",
		"mongodb://127.0.0.1:27017/?connectTimeoutMS=banana",
	} {
		t.Run(uri, func(t *testing.T) {
			_, err := proxy.NewUpstream(uri)
			require.Error(t, err)
			assert.ErrorIs(t, err, proxy.ErrUpstreamURI)
			assert.NotContains(t, err.Error(), "secret", "credentials are redacted")
		})
	}
}
