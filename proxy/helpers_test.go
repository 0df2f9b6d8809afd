package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/proxy"
)

// ferret is the embedded FerretDB shared by the tests of this package.
var ferret *embedmongo.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	var err error
	ferret, err = embedmongo.Start(ctx, embedmongo.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting embedded FerretDB:", err)
		os.Exit(1)
	}
	code := m.Run()
	ferret.Stop()
	os.Exit(code)
}

// running is a proxy under test.
type running struct {
	server   *proxy.Server
	upstream *proxy.Upstream
	registry *prometheus.Registry
	addr     string
	uri      string
}

// testLogger writes the proxy's logs to the test log, so a failure shows why a connection closed.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// serveProxy serves a proxy in front of upstreamURI on a free loopback port until the test ends.
func serveProxy(t testing.TB, upstreamURI string, opts ...proxy.Option) *running {
	t.Helper()
	return serveProxyOn(t, upstreamURI, nil, opts...)
}

func serveProxyOn(t testing.TB, upstreamURI string, ln net.Listener, opts ...proxy.Option) *running {
	t.Helper()
	up, err := proxy.NewUpstream(upstreamURI, proxy.WithDialTimeout(2*time.Second), proxy.WithUpstreamLogger(testLogger(t)))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	opts = append([]proxy.Option{proxy.WithLogger(testLogger(t)), proxy.WithMetrics(proxy.NewMetrics(reg))}, opts...)
	srv := proxy.NewServer(up, opts...)
	if ln == nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-served
		_ = up.Close(ctx)
	})
	return &running{server: srv, upstream: up, registry: reg, addr: ln.Addr().String(), uri: "mongodb://" + ln.Addr().String() + "/"}
}

// connect opens a driver client that the test closes at its end.
func connect(t testing.TB, uri string, opts ...*options.ClientOptions) *mongo.Client {
	t.Helper()
	o := options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second)
	all := append([]*options.ClientOptions{o}, opts...)
	c, err := mongo.Connect(all...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return c
}

// metric returns the value of a counter or gauge with the given label, 0 when absent.
func metric(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

// rawConn is a client that speaks the wire protocol by hand, for what drivers never send.
type rawConn struct {
	t testing.TB
	net.Conn
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c}
}

// send writes an OP_MSG with the given flags and command document; it returns its requestID.
func (r *rawConn) send(flags wiremessage.MsgFlag, cmd bson.D) int32 {
	r.t.Helper()
	body, err := bson.Marshal(cmd)
	require.NoError(r.t, err)
	id := wiremessage.NextRequestID()
	b := wiremessage.AppendHeader(nil, 0, id, 0, wiremessage.OpMsg)
	b = wiremessage.AppendMsgFlags(b, flags)
	b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
	b = append(b, body...)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	_, err = r.Write(b)
	require.NoError(r.t, err)
	return id
}

// reply is one OP_MSG reply read by a rawConn.
type reply struct {
	requestID, responseTo int32
	flags                 wiremessage.MsgFlag
	doc                   bson.M
}

// read reads one OP_MSG reply, failing the test after 10s.
func (r *rawConn) read() reply {
	r.t.Helper()
	rep, err := r.tryRead(10 * time.Second)
	require.NoError(r.t, err)
	return rep
}

func (r *rawConn) tryRead(timeout time.Duration) (reply, error) {
	_ = r.SetReadDeadline(time.Now().Add(timeout))
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return reply{}, err
	}
	n := binary.LittleEndian.Uint32(hdr)
	body := make([]byte, n-16)
	if _, err := io.ReadFull(r, body); err != nil {
		return reply{}, err
	}
	if op := wiremessage.OpCode(binary.LittleEndian.Uint32(hdr[12:])); op != wiremessage.OpMsg {
		return reply{}, fmt.Errorf("reply opcode %s", op)
	}
	rep := reply{
		requestID:  int32(binary.LittleEndian.Uint32(hdr[4:])),
		responseTo: int32(binary.LittleEndian.Uint32(hdr[8:])),
		flags:      wiremessage.MsgFlag(binary.LittleEndian.Uint32(body)),
	}
	d, _, ok := bsoncore.ReadDocument(body[5:])
	if !ok {
		return reply{}, fmt.Errorf("bad reply document")
	}
	if err := bson.Unmarshal(d, &rep.doc); err != nil {
		return reply{}, err
	}
	return rep, nil
}

// expectClosed asserts that the peer closes the connection within 10s.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1024)
	for {
		_, err := r.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatalf("connection still open after 10s")
		}
		return
	}
}
