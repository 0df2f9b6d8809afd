// Package proxytest holds FakeUpstream, a fake MongoDB server for the proxy's tests and
// benchmarks. It is a fake, not a MongoDB: it exists for what no real server here can do
// (answer every command at once, so that a benchmark measures only the proxy; hold a reply for
// a set time; stream exhaust replies; speak OP_COMPRESSED, which FerretDB does not; refuse
// txnNumber as a standalone mongod does, which FerretDB accepts). Tests of MongoDB behaviour
// use embedded FerretDB instead.
package proxytest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdg-go/scram"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Commands only the fake understands.
const (
	// SleepCommand {fakeSleep: ms} replies {ok: 1} after ms milliseconds.
	SleepCommand = "fakeSleep"
	// StreamCommand {fakeStream: n, intervalMS: ms}, sent with exhaustAllowed, gets n replies
	// {ok: 1, i: k} ms apart (default 0), all but the last with moreToCome; without
	// exhaustAllowed it gets one.
	StreamCommand = "fakeStream"
)

// fakeConn is one connection's state: its id and its SCRAM authentication.
type fakeConn struct {
	id     int32
	authed bool
	conv   *scram.ServerConversation
}

// FakeUpstream answers hello as a standalone, a replica-set primary or a mongos, find and
// findAndModify with one document, insert, update and delete with n, and every other command
// with {ok: 1}.
type FakeUpstream struct {
	ln          net.Listener
	replSet     string
	router      bool
	standalone  bool // refuses txnNumber
	record      bool
	commands    []bson.Raw // guarded by mu; kept when record is set
	compressors []string
	scram       *scram.Server
	connID      atomic.Int32
	requests    atomic.Int64
	compressed  atomic.Int64
	wg          sync.WaitGroup
	mu          sync.Mutex
	conns       map[net.Conn]struct{}
	closed      bool
}

// FakeOption configures a FakeUpstream.
type FakeOption func(*FakeUpstream)

// AsReplicaSetPrimary makes hello describe a one-member replica set named name (setName, hosts,
// primary, me), as a real primary does.
func AsReplicaSetPrimary(name string) FakeOption {
	return func(f *FakeUpstream) { f.replSet, f.router, f.standalone = name, false, false }
}

// AsRouter makes hello describe a mongos (msg "isdbgrid", no setName).
func AsRouter() FakeOption {
	return func(f *FakeUpstream) { f.replSet, f.router, f.standalone = "", true, false }
}

// AsStandalone makes the fake a standalone mongod in what sets one apart for drivers: its hello
// has neither setName nor msg (as without the options above), and every command that carries
// txnNumber, a retryable write or a transaction's, fails with IllegalOperation (20), "Transaction
// numbers are only allowed on a replica set member or mongos", as on a real standalone.
func AsStandalone() FakeOption {
	return func(f *FakeUpstream) { f.replSet, f.router, f.standalone = "", false, true }
}

// RecordingCommands makes the fake keep a copy of every command it receives but hello and the
// SASL commands, for Commands.
func RecordingCommands() FakeOption { return func(f *FakeUpstream) { f.record = true } }

// WithCompressors makes hello accept these compressors (snappy, zlib, zstd) when a client
// offers them.
func WithCompressors(names ...string) FakeOption {
	return func(f *FakeUpstream) { f.compressors = names }
}

// WithSCRAMUser requires SCRAM-SHA-256 authentication as user with password (the driver's
// SCRAM code on the other side): every command but hello, ping and the SASL commands fails with
// Unauthorized (13) until the connection has authenticated, and a conversation's steps must
// arrive on the connection that started it, as on a real server.
func WithSCRAMUser(user, password string) FakeOption {
	return func(f *FakeUpstream) {
		client, err := scram.SHA256.NewClient(user, password, "")
		if err != nil {
			panic(fmt.Sprintf("fake SCRAM user %q: %v", user, err))
		}
		stored := client.GetStoredCredentials(scram.KeyFactors{Salt: "tandem-fake-salt", Iters: 4096})
		srv, err := scram.SHA256.NewServer(func(name string) (scram.StoredCredentials, error) {
			if name != user {
				return scram.StoredCredentials{}, fmt.Errorf("no user %q", name)
			}
			return stored, nil
		})
		if err != nil {
			panic(err) // only fails for a nil lookup
		}
		f.scram = srv
	}
}

// StartFake starts a fake upstream on a free loopback port.
func StartFake(opts ...FakeOption) (*FakeUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &FakeUpstream{ln: ln, conns: make(map[net.Conn]struct{})}
	for _, o := range opts {
		o(f)
	}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

// Addr returns host:port.
func (f *FakeUpstream) Addr() string { return f.ln.Addr().String() }

// URI returns a connection string for the fake.
func (f *FakeUpstream) URI() string { return "mongodb://" + f.Addr() + "/" }

// Requests returns how many requests the fake has received.
func (f *FakeUpstream) Requests() int64 { return f.requests.Load() }

// CompressedRequests returns how many requests arrived as OP_COMPRESSED.
func (f *FakeUpstream) CompressedRequests() int64 { return f.compressed.Load() }

// Commands returns the command documents received so far, in order, with RecordingCommands;
// nil without it.
func (f *FakeUpstream) Commands() []bson.Raw {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bson.Raw(nil), f.commands...)
}

// Close stops the fake and closes its connections.
func (f *FakeUpstream) Close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.ln.Close()
	f.wg.Wait()
}

func (f *FakeUpstream) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() {
				f.mu.Lock()
				delete(f.conns, c)
				f.mu.Unlock()
				c.Close()
			}()
			_ = f.serve(c, &fakeConn{id: f.connID.Add(1)})
		}()
	}
}

// serve answers requests on one connection, one at a time, as a mongod connection does.
func (f *FakeUpstream) serve(c net.Conn, fc *fakeConn) error {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	buf := make([]byte, 0, 4096)
	out := make([]byte, 0, 4096)
	for {
		buf = buf[:16]
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		n := int(binary.LittleEndian.Uint32(buf))
		if n < 16 || n > 48_000_000 {
			return fmt.Errorf("fake: bad length %d", n)
		}
		if cap(buf) < n {
			nb := make([]byte, n)
			copy(nb, buf)
			buf = nb
		}
		buf = buf[:n]
		if _, err := io.ReadFull(c, buf[16:]); err != nil {
			return err
		}
		f.requests.Add(1)
		reqID := int32(binary.LittleEndian.Uint32(buf[4:]))
		op := wiremessage.OpCode(binary.LittleEndian.Uint32(buf[12:]))
		body := buf[16:]
		compressor := wiremessage.CompressorNoOp
		if op == wiremessage.OpCompressed {
			if len(body) < 9 {
				return errors.New("fake: short OP_COMPRESSED")
			}
			f.compressed.Add(1)
			op = wiremessage.OpCode(binary.LittleEndian.Uint32(body))
			size := int32(binary.LittleEndian.Uint32(body[4:]))
			compressor = wiremessage.CompressorID(body[8])
			var err error
			body, err = driver.DecompressPayload(body[9:], driver.CompressionOpts{Compressor: compressor, UncompressedSize: size})
			if err != nil {
				return err
			}
		}
		var err error
		switch op {
		case wiremessage.OpQuery:
			out, err = f.answerQuery(out[:0], reqID, body, fc)
		case wiremessage.OpMsg:
			var replies int
			out, replies, err = f.answerMsg(c, out[:0], reqID, body, fc, compressor)
			if replies > 0 {
				continue // already written
			}
		default:
			return fmt.Errorf("fake: opcode %d", op)
		}
		if err != nil {
			return err
		}
		if out == nil {
			continue
		}
		if compressor != wiremessage.CompressorNoOp {
			if out, err = compress(out, compressor); err != nil {
				return err
			}
		}
		if _, err := c.Write(out); err != nil {
			return err
		}
	}
}

func (f *FakeUpstream) answerQuery(out []byte, reqID int32, body []byte, fc *fakeConn) ([]byte, error) {
	// flags, cstring collection, skip, return, query
	i := 4
	for i < len(body) && body[i] != 0 {
		i++
	}
	if i+9 > len(body) {
		return nil, errors.New("fake: short OP_QUERY")
	}
	q := bsoncore.Document(body[i+9:])
	reply := f.reply(q, fc)
	out = wiremessage.AppendHeader(out, 0, wiremessage.NextRequestID(), reqID, wiremessage.OpReply)
	out = wiremessage.AppendReplyFlags(out, 0)
	out = wiremessage.AppendReplyCursorID(out, 0)
	out = wiremessage.AppendReplyStartingFrom(out, 0)
	out = wiremessage.AppendReplyNumberReturned(out, 1)
	out = append(out, reply...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out, nil
}

// answerMsg builds the reply to an OP_MSG; for a streamed command it writes the replies itself
// and returns how many it wrote.
func (f *FakeUpstream) answerMsg(c net.Conn, out []byte, reqID int32, body []byte, fc *fakeConn, comp wiremessage.CompressorID) ([]byte, int, error) {
	flags := wiremessage.MsgFlag(binary.LittleEndian.Uint32(body))
	if len(body) < 5 || body[4] != 0 {
		return nil, 0, errors.New("fake: OP_MSG without a leading body section")
	}
	doc, rest, ok := bsoncore.ReadDocument(body[5:])
	if !ok {
		return nil, 0, errors.New("fake: bad OP_MSG body")
	}
	if flags&wiremessage.ChecksumPresent != 0 && len(rest) >= 4 {
		rest = rest[:len(rest)-4]
	}
	if len(rest) > 0 {
		var err error
		if doc, err = withSequences(doc, rest); err != nil {
			return nil, 0, err
		}
	}
	cmd := doc.Index(0).Key()
	switch cmd {
	case SleepCommand:
		ms, _ := doc.Index(0).Value().AsInt64OK()
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case StreamCommand:
		n, _ := doc.Index(0).Value().AsInt64OK()
		if flags&wiremessage.ExhaustAllowed == 0 {
			n = 1
		}
		var interval time.Duration
		if v, err := doc.LookupErr("intervalMS"); err == nil {
			ms, _ := v.AsInt64OK()
			interval = time.Duration(ms) * time.Millisecond
		}
		respTo := reqID
		for k := int64(1); k <= n; k++ {
			if k > 1 {
				time.Sleep(interval)
			}
			var fl wiremessage.MsgFlag
			if k < n {
				fl = wiremessage.MoreToCome
			}
			id := wiremessage.NextRequestID()
			msg := appendMsg(nil, id, respTo, fl, bsoncore.NewDocumentBuilder().AppendInt32("ok", 1).AppendInt64("i", k).Build())
			if comp != wiremessage.CompressorNoOp {
				var err error
				if msg, err = compress(msg, comp); err != nil {
					return nil, 0, err
				}
			}
			if _, err := c.Write(msg); err != nil {
				return nil, 0, err
			}
			respTo = id
		}
		return nil, int(n), nil
	}
	if flags&wiremessage.MoreToCome != 0 {
		return nil, 0, nil // unacknowledged: no reply
	}
	return appendMsg(out, wiremessage.NextRequestID(), reqID, 0, f.reply(doc, fc)), 0, nil
}

// withSequences returns the command with the document sequences of an OP_MSG's kind 1 sections
// as array fields, as a server reads them
// (https://github.com/mongodb/specifications/blob/master/source/message/OP_MSG.md#kind-1-document-sequence).
func withSequences(doc bsoncore.Document, sections []byte) (bsoncore.Document, error) {
	out := append([]byte(nil), doc[:len(doc)-1]...)
	for len(sections) > 0 {
		if sections[0] != 1 || len(sections) < 5 {
			return nil, fmt.Errorf("fake: OP_MSG section kind %d after the body", sections[0])
		}
		size := int(binary.LittleEndian.Uint32(sections[1:]))
		if size < 5 || size > len(sections)-1 {
			return nil, errors.New("fake: bad document sequence size")
		}
		seq := sections[5 : 1+size]
		sections = sections[1+size:]
		i := 0
		for i < len(seq) && seq[i] != 0 {
			i++
		}
		if i == len(seq) {
			return nil, errors.New("fake: document sequence without identifier")
		}
		arr := bsoncore.NewArrayBuilder()
		for docs := seq[i+1:]; len(docs) > 0; {
			d, rem, ok := bsoncore.ReadDocument(docs)
			if !ok {
				return nil, errors.New("fake: bad document in a sequence")
			}
			arr.AppendDocument(d)
			docs = rem
		}
		out = bsoncore.AppendArrayElement(out, string(seq[:i]), arr.Build())
	}
	out = append(out, 0)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out, nil
}

func appendMsg(out []byte, id, respTo int32, flags wiremessage.MsgFlag, doc bsoncore.Document) []byte {
	out = wiremessage.AppendHeader(out, 0, id, respTo, wiremessage.OpMsg)
	out = wiremessage.AppendMsgFlags(out, flags)
	out = wiremessage.AppendMsgSectionType(out, wiremessage.SingleDocument)
	out = append(out, doc...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out
}

// reply answers one command document.
func (f *FakeUpstream) reply(cmd bsoncore.Document, fc *fakeConn) bsoncore.Document {
	name := ""
	if e, err := cmd.IndexErr(0); err == nil {
		name = e.Key()
	}
	switch name {
	case "hello", "isMaster", "ismaster":
		return f.hello(cmd, fc.id)
	case "saslStart", "saslContinue":
		return f.sasl(name, cmd, fc)
	case "ping":
	default:
		if f.scram != nil && !fc.authed {
			return errorDoc(13, "Unauthorized", "command "+name+" requires authentication")
		}
	}
	if f.record {
		f.mu.Lock()
		f.commands = append(f.commands, bson.Raw(append([]byte(nil), cmd...)))
		f.mu.Unlock()
	}
	if _, err := cmd.LookupErr("txnNumber"); err == nil && f.standalone {
		return errorDoc(20, "IllegalOperation", "Transaction numbers are only allowed on a replica set member or mongos")
	}
	switch name {
	case "find":
		coll, _ := cmd.Index(0).Value().StringValueOK()
		db, _ := cmd.Lookup("$db").StringValueOK()
		first := bsoncore.NewArrayBuilder().AppendDocument(
			bsoncore.NewDocumentBuilder().AppendString("_id", "k1").AppendInt32("x", 1).Build()).Build()
		cursor := bsoncore.NewDocumentBuilder().AppendInt64("id", 0).AppendString("ns", db+"."+coll).AppendArray("firstBatch", first).Build()
		return bsoncore.NewDocumentBuilder().AppendDocument("cursor", cursor).AppendDouble("ok", 1).Build()
	case "insert":
		n := int32(1)
		if docs, err := cmd.LookupErr("documents"); err == nil {
			if arr, ok := docs.ArrayOK(); ok {
				vals, _ := arr.Values()
				n = int32(len(vals))
			}
		}
		return bsoncore.NewDocumentBuilder().AppendInt32("n", n).AppendDouble("ok", 1).Build()
	case "update":
		return bsoncore.NewDocumentBuilder().AppendInt32("n", 1).AppendInt32("nModified", 1).AppendDouble("ok", 1).Build()
	case "delete":
		return bsoncore.NewDocumentBuilder().AppendInt32("n", 1).AppendDouble("ok", 1).Build()
	case "findAndModify", "findandmodify":
		last := bsoncore.NewDocumentBuilder().AppendInt32("n", 1).AppendBoolean("updatedExisting", true).Build()
		value := bsoncore.NewDocumentBuilder().AppendString("_id", "k1").AppendInt32("x", 1).Build()
		return bsoncore.NewDocumentBuilder().AppendDocument("lastErrorObject", last).AppendDocument("value", value).AppendDouble("ok", 1).Build()
	}
	return bsoncore.NewDocumentBuilder().AppendDouble("ok", 1).Build()
}

func (f *FakeUpstream) hello(cmd bsoncore.Document, connID int32) bsoncore.Document {
	d := bson.D{
		{Key: "helloOk", Value: true},
		{Key: "isWritablePrimary", Value: true},
		{Key: "ismaster", Value: true},
		{Key: "maxBsonObjectSize", Value: int32(16 * 1024 * 1024)},
		{Key: "maxMessageSizeBytes", Value: int32(48_000_000)},
		{Key: "maxWriteBatchSize", Value: int32(100_000)},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		{Key: "connectionId", Value: connID},
		{Key: "minWireVersion", Value: int32(0)},
		{Key: "maxWireVersion", Value: int32(21)},
		{Key: "readOnly", Value: false},
	}
	if f.replSet != "" {
		d = append(d,
			bson.E{Key: "setName", Value: f.replSet},
			bson.E{Key: "setVersion", Value: int32(1)},
			bson.E{Key: "hosts", Value: bson.A{f.Addr()}},
			bson.E{Key: "primary", Value: f.Addr()},
			bson.E{Key: "me", Value: f.Addr()},
			bson.E{Key: "secondary", Value: false},
			bson.E{Key: "electionId", Value: bson.NewObjectID()},
		)
	}
	if f.router {
		d = append(d, bson.E{Key: "msg", Value: "isdbgrid"})
	}
	if offered, err := cmd.LookupErr("compression"); err == nil && len(f.compressors) > 0 {
		var agreed bson.A
		if arr, ok := offered.ArrayOK(); ok {
			vals, _ := arr.Values()
			for _, v := range vals {
				s, _ := v.StringValueOK()
				for _, c := range f.compressors {
					if c == s {
						agreed = append(agreed, s)
					}
				}
			}
		}
		if agreed != nil {
			d = append(d, bson.E{Key: "compression", Value: agreed})
		}
	}
	d = append(d, bson.E{Key: "ok", Value: 1.0})
	b, err := bson.Marshal(d)
	if err != nil {
		panic(err) // static document
	}
	return b
}

// sasl runs one step of a SCRAM-SHA-256 conversation
// (https://github.com/mongodb/specifications/blob/master/source/auth/auth.md#scram-sha-256).
func (f *FakeUpstream) sasl(name string, cmd bsoncore.Document, fc *fakeConn) bsoncore.Document {
	if f.scram == nil {
		return errorDoc(334, "MechanismUnavailable", "the fake has no users")
	}
	if name == "saslStart" {
		if mech, _ := cmd.Lookup("mechanism").StringValueOK(); mech != "SCRAM-SHA-256" {
			return errorDoc(334, "MechanismUnavailable", "unsupported mechanism "+mech)
		}
		fc.conv, fc.authed = f.scram.NewConversation(), false
	} else if fc.conv == nil {
		return errorDoc(17, "ProtocolError", "no SASL session state found")
	}
	var payload []byte
	if _, data, ok := cmd.Lookup("payload").BinaryOK(); ok {
		payload = data
	}
	var resp string
	if !fc.conv.Done() {
		var err error
		if resp, err = fc.conv.Step(string(payload)); err != nil {
			fc.conv = nil
			return errorDoc(18, "AuthenticationFailed", "Authentication failed.")
		}
	}
	done := fc.conv.Done()
	if done {
		fc.authed = fc.conv.Valid()
	}
	return bsoncore.NewDocumentBuilder().
		AppendInt32("conversationId", 1).
		AppendBoolean("done", done).
		AppendBinary("payload", 0, []byte(resp)).
		AppendDouble("ok", 1).Build()
}

func errorDoc(code int32, codeName, msg string) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().AppendDouble("ok", 0).AppendString("errmsg", msg).
		AppendInt32("code", code).AppendString("codeName", codeName).Build()
}

// compress wraps an uncompressed message in OP_COMPRESSED.
func compress(msg []byte, id wiremessage.CompressorID) ([]byte, error) {
	payload, err := driver.CompressPayload(msg[16:], driver.CompressionOpts{Compressor: id, ZlibLevel: 6, ZstdLevel: 6})
	if err != nil {
		return nil, err
	}
	reqID := int32(binary.LittleEndian.Uint32(msg[4:]))
	respTo := int32(binary.LittleEndian.Uint32(msg[8:]))
	op := wiremessage.OpCode(binary.LittleEndian.Uint32(msg[12:]))
	out := wiremessage.AppendHeader(nil, 0, reqID, respTo, wiremessage.OpCompressed)
	out = wiremessage.AppendCompressedOriginalOpCode(out, op)
	out = wiremessage.AppendCompressedUncompressedSize(out, int32(len(msg)-16))
	out = wiremessage.AppendCompressedCompressorID(out, id)
	out = append(out, payload...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out, nil
}
