package proxy_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/bench/cputime"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/proxy/proxytest"
)

// The passthrough benchmarks send pre-encoded OP_MSG requests over one raw TCP connection, one
// in flight at a time, and read the replies. BenchmarkPassthrough goes through a proxy.Server to
// the fake upstream; BenchmarkDirectFake goes straight to the fake. The client side allocates
// nothing per round trip, so BenchmarkDirectFake's allocs/op are the fake's, and the difference
// between the two is what the proxy allocates per request and reply. cpu-ns/op is the CPU time
// (user + system) of the whole process per round trip — client, fake and proxy together — so the
// difference from BenchmarkDirectFake is the proxy's CPU cost, a steadier measure than ns/op
// on a shared machine. BenchmarkRawForwarder is the floor for both.

// benchRequests are small commands shaped as a driver sends them.
var benchRequests = []struct {
	name string
	body bsoncore.Document
}{
	{"ping", bsoncore.NewDocumentBuilder().
		AppendInt32("ping", 1).
		AppendString("$db", "admin").
		Build()},
	{"find", bsoncore.NewDocumentBuilder().
		AppendString("find", "items").
		AppendDocument("filter", bsoncore.NewDocumentBuilder().AppendString("_id", "k1").Build()).
		AppendInt64("limit", 1).
		AppendBoolean("singleBatch", true).
		AppendDocument("lsid", bsoncore.NewDocumentBuilder().
			AppendBinary("id", 4, []byte("0123456789abcdef")).Build()).
		AppendString("$db", "tandem_bench").
		Build()},
}

// benchFrame encodes an OP_MSG request with one body section.
func benchFrame(body bsoncore.Document) []byte {
	b := wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpMsg)
	b = wiremessage.AppendMsgFlags(b, 0)
	b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
	b = append(b, body...)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

func benchStartFake(b *testing.B) *proxytest.FakeUpstream {
	b.Helper()
	f, err := proxytest.StartFake()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	return f
}

// benchStartProxy serves a proxy.Server in front of upstreamURI on a free loopback port.
func benchStartProxy(b *testing.B, upstreamURI string, opts ...proxy.Option) string {
	b.Helper()
	quiet := slog.New(slog.DiscardHandler)
	up, err := proxy.NewUpstream(upstreamURI, proxy.WithUpstreamLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = up.Close(b.Context()) })
	srv := proxy.NewServer(up, append([]proxy.Option{proxy.WithLogger(quiet), proxy.WithMetrics(proxy.NewMetrics(nil))}, opts...)...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ln)
		close(done)
	}()
	b.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// benchRoundTrips sends each request of benchRequests, as a sub-benchmark, to addr and reads its
// reply, one at a time.
func benchRoundTrips(b *testing.B, addr string) { benchRoundTripsOf(b, addr, benchRequests) }

func benchRoundTripsOf(b *testing.B, addr string, requests []struct {
	name string
	body bsoncore.Document
}) {
	for _, req := range requests {
		b.Run(req.name, func(b *testing.B) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg := benchFrame(req.body)
			buf := make([]byte, 64<<10)
			roundTrip := func(id int32) error {
				binary.LittleEndian.PutUint32(msg[4:], uint32(id))
				if _, err := c.Write(msg); err != nil {
					return err
				}
				if _, err := io.ReadFull(c, buf[:16]); err != nil {
					return err
				}
				n := int(binary.LittleEndian.Uint32(buf))
				if n < 16 || n > len(buf) {
					return errBenchBadReply
				}
				if _, err := io.ReadFull(c, buf[16:n]); err != nil {
					return err
				}
				if int32(binary.LittleEndian.Uint32(buf[8:])) != id {
					return errBenchBadReply
				}
				return nil
			}
			// The first round trip dials the upstream (through the proxy) and warms the buffers.
			if err := roundTrip(1); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0, cpuOK := cputime.Process()
			for id := int32(2); b.Loop(); id++ {
				if err := roundTrip(id); err != nil {
					b.Fatal(err)
				}
			}
			if cpu1, _ := cputime.Process(); cpuOK {
				b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
			}
		})
	}
}

var errBenchBadReply = io.ErrUnexpectedEOF

// BenchmarkPassthrough measures one request/reply round trip through a proxy.Server to the
// fake upstream.
func BenchmarkPassthrough(b *testing.B) {
	f := benchStartFake(b)
	benchRoundTrips(b, benchStartProxy(b, f.URI()))
}

// BenchmarkRawForwarder is BenchmarkPassthrough through a raw TCP byte forwarder (io.Copy both
// ways, no parsing) instead of the proxy: the floor for any proxy's added latency.
func BenchmarkRawForwarder(b *testing.B) {
	f := benchStartFake(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", f.Addr())
				if err != nil {
					return
				}
				defer up.Close()
				go func() {
					_, _ = io.Copy(up, c)
					up.Close()
				}()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	benchRoundTrips(b, ln.Addr().String())
}

// BenchmarkDirectFake is BenchmarkPassthrough without the proxy: the baseline for its ns/op
// and allocs/op.
func BenchmarkDirectFake(b *testing.B) {
	f := benchStartFake(b)
	benchRoundTrips(b, f.Addr())
}

// countingWriter is a benchmark double of the shadow writer: it counts keys and converges
// nothing, so BenchmarkMigratedRequestPath measures only what the proxy itself adds on the
// request path of a migrated collection (flags, key extraction, hand-off), not the converge
// work, whose cost is the stores' (bench/phasebench measures it against FerretDB).
type countingWriter struct{ keys atomic.Int64 }

func (w *countingWriter) Async(keys []adapters.Key, _ string) { w.keys.Add(int64(len(keys))) }
func (w *countingWriter) Sync(_ context.Context, keys []adapters.Key, _ string) error {
	w.keys.Add(int64(len(keys)))
	return nil
}
func (w *countingWriter) Unkeyed(context.Context, string, bson.Raw) {}

// BenchmarkMigratedRequestPath is BenchmarkPassthrough's round trip for an insert and a find by
// _id on a migrated collection, in phases off, shadow and dual, against the fake upstream.
func BenchmarkMigratedRequestPath(b *testing.B) {
	requests := []struct {
		name string
		body bsoncore.Document
	}{
		{"insert", bsoncore.NewDocumentBuilder().
			AppendString("insert", "items").
			AppendArray("documents", bsoncore.NewArrayBuilder().AppendDocument(
				bsoncore.NewDocumentBuilder().AppendString("_id", "k1").AppendString("name", "Ada").AppendInt32("age", 36).Build()).Build()).
			AppendBoolean("ordered", true).
			AppendDocument("lsid", bsoncore.NewDocumentBuilder().AppendBinary("id", 4, []byte("0123456789abcdef")).Build()).
			AppendString("$db", "tandem_bench").
			Build()},
		benchRequests[1], // find by _id
	}
	f := benchStartFake(b)
	for _, phase := range []string{"passthrough", flags.PhaseOff, flags.PhaseShadow, flags.PhaseDual} {
		b.Run(phase, func(b *testing.B) {
			if phase == "passthrough" {
				benchRoundTripsOf(b, benchStartProxy(b, f.URI()), requests)
				return
			}
			fs := &flagSwitch{}
			fs.set(flags.Values{Phase: phase, ReadSource: flags.ReadOld})
			w := &countingWriter{}
			routes, err := proxy.NewRoutes(fs, "", &proxy.Migration{Name: "bench", Database: "tandem_bench", Collection: "items", Writer: w})
			if err != nil {
				b.Fatal(err)
			}
			benchRoundTripsOf(b, benchStartProxy(b, f.URI(), proxy.WithRoutes(routes)), requests)
			if phase != flags.PhaseOff && w.keys.Load() == 0 {
				b.Fatal("no key reached the shadow writer")
			}
		})
	}
}
