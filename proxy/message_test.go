package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

func doc(t testing.TB, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	require.NoError(t, err)
	return b
}

// opMsg builds an OP_MSG frame from a body document and optional document sequences.
func opMsg(flags wiremessage.MsgFlag, body []byte, seqs ...[]byte) []byte {
	b := wiremessage.AppendHeader(nil, 0, 7, 0, wiremessage.OpMsg)
	b = wiremessage.AppendMsgFlags(b, flags)
	b = append(b, 0)
	b = append(b, body...)
	for _, s := range seqs {
		b = append(b, 1)
		b = append(b, s...)
	}
	if flags&wiremessage.ChecksumPresent != 0 {
		b = binary.LittleEndian.AppendUint32(b, 0) // placeholder, fixed below
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	if flags&wiremessage.ChecksumPresent != 0 {
		sum := crc32.Checksum(b[:len(b)-4], crc32.MakeTable(crc32.Castagnoli))
		binary.LittleEndian.PutUint32(b[len(b)-4:], sum)
	}
	return b
}

// sequence builds a kind 1 section payload (size, identifier, documents).
func sequence(id string, docs ...[]byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, id...)
	b = append(b, 0)
	for _, d := range docs {
		b = append(b, d...)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

func opQuery(ns string, query []byte) []byte {
	b := wiremessage.AppendHeader(nil, 0, 9, 0, wiremessage.OpQuery)
	b = wiremessage.AppendQueryFlags(b, 0)
	b = wiremessage.AppendQueryFullCollectionName(b, ns)
	b = wiremessage.AppendQueryNumberToSkip(b, 0)
	b = wiremessage.AppendQueryNumberToReturn(b, -1)
	b = append(b, query...)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

func opReply(docs ...[]byte) []byte {
	b := wiremessage.AppendHeader(nil, 0, 11, 9, wiremessage.OpReply)
	b = wiremessage.AppendReplyFlags(b, wiremessage.AwaitCapable)
	b = wiremessage.AppendReplyCursorID(b, 0)
	b = wiremessage.AppendReplyStartingFrom(b, 0)
	b = wiremessage.AppendReplyNumberReturned(b, int32(len(docs)))
	for _, d := range docs {
		b = append(b, d...)
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

func compressed(t testing.TB, frame []byte, id wiremessage.CompressorID) []byte {
	t.Helper()
	payload, err := driver.CompressPayload(frame[16:], driver.CompressionOpts{Compressor: id, ZlibLevel: 6, ZstdLevel: 6})
	require.NoError(t, err)
	h := parseHeader(frame)
	b := wiremessage.AppendHeader(nil, 0, h.requestID, h.responseTo, wiremessage.OpCompressed)
	b = wiremessage.AppendCompressedOriginalOpCode(b, h.opCode)
	b = wiremessage.AppendCompressedUncompressedSize(b, int32(len(frame)-16))
	b = wiremessage.AppendCompressedCompressorID(b, id)
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	return b
}

func TestDecodeRequests(t *testing.T) {
	find := doc(t, bson.D{{Key: "find", Value: "users"}, {Key: "filter", Value: bson.D{}}, {Key: "$db", Value: "app"}})
	insert := doc(t, bson.D{{Key: "insert", Value: "users"}, {Key: "$db", Value: "app"}})
	getMore := doc(t, bson.D{{Key: "getMore", Value: int64(42)}, {Key: "collection", Value: "events"}, {Key: "$db", Value: "app"}})
	hello := doc(t, bson.D{{Key: "isMaster", Value: 1}, {Key: "client", Value: bson.D{{Key: "driver", Value: "x"}}}})
	wrapped := doc(t, bson.D{{Key: "$query", Value: bson.D{{Key: "count", Value: "c"}}}, {Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "primary"}}}})
	d1 := doc(t, bson.D{{Key: "_id", Value: "a"}})
	d2 := doc(t, bson.D{{Key: "_id", Value: "b"}})

	tests := []struct {
		name       string
		frame      []byte
		op         wiremessage.OpCode
		command    string
		db         string
		collection string
		sequences  int
		flags      wiremessage.MsgFlag
		compressor wiremessage.CompressorID
	}{
		{name: "OP_MSG find", frame: opMsg(0, find), op: wiremessage.OpMsg, command: "find", db: "app", collection: "users"},
		{name: "OP_MSG with checksum", frame: opMsg(wiremessage.ChecksumPresent, find), op: wiremessage.OpMsg, command: "find", db: "app", collection: "users", flags: wiremessage.ChecksumPresent},
		{name: "OP_MSG insert with document sequence", frame: opMsg(0, insert, sequence("documents", d1, d2)), op: wiremessage.OpMsg, command: "insert", db: "app", collection: "users", sequences: 1},
		{name: "OP_MSG moreToCome", frame: opMsg(wiremessage.MoreToCome, insert, sequence("documents", d1)), op: wiremessage.OpMsg, command: "insert", db: "app", collection: "users", sequences: 1, flags: wiremessage.MoreToCome},
		{name: "OP_MSG exhaustAllowed", frame: opMsg(wiremessage.ExhaustAllowed, getMore), op: wiremessage.OpMsg, command: "getMore", db: "app", collection: "events", flags: wiremessage.ExhaustAllowed},
		{name: "OP_QUERY handshake", frame: opQuery("admin.$cmd", hello), op: wiremessage.OpQuery, command: "isMaster", db: "admin"},
		{name: "OP_QUERY $query wrapper", frame: opQuery("test.$cmd", wrapped), op: wiremessage.OpQuery, command: "count", db: "test", collection: "c"},
		{name: "OP_COMPRESSED snappy", frame: compressed(t, opMsg(0, find), wiremessage.CompressorSnappy), op: wiremessage.OpMsg, command: "find", db: "app", collection: "users", compressor: wiremessage.CompressorSnappy},
		{name: "OP_COMPRESSED zlib", frame: compressed(t, opMsg(0, insert, sequence("documents", d1)), wiremessage.CompressorZLib), op: wiremessage.OpMsg, command: "insert", db: "app", collection: "users", sequences: 1, compressor: wiremessage.CompressorZLib},
		{name: "OP_COMPRESSED zstd", frame: compressed(t, opQuery("admin.$cmd", hello), wiremessage.CompressorZstd), op: wiremessage.OpQuery, command: "isMaster", db: "admin", compressor: wiremessage.CompressorZstd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decode(tt.frame)
			require.NoError(t, err)
			assert.Equal(t, tt.op, m.OpCode)
			assert.Equal(t, tt.command, string(m.Name))
			assert.Equal(t, tt.db, string(m.Database))
			assert.Equal(t, tt.collection, string(m.Collection()))
			assert.Equal(t, tt.sequences, m.Sequences)
			assert.Equal(t, tt.flags, m.Flags)
			assert.Equal(t, tt.compressor, m.Compressor)
		})
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	find := doc(t, bson.D{{Key: "find", Value: "users"}, {Key: "$db", Value: "app"}})
	good := opMsg(0, find)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	withLen := func(b []byte) []byte { binary.LittleEndian.PutUint32(b, uint32(len(b))); return b }

	tests := []struct {
		name  string
		frame []byte
		want  error
	}{
		{"unknown opcode", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 9999); return b }), ErrUnsupportedOpcode},
		{"legacy OP_INSERT", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 2002); return b }), ErrUnsupportedOpcode},
		{"unknown required flag bit", mutate(func(b []byte) []byte { b[16] |= 1 << 3; return b }), ErrMalformed},
		{"no body section", withLen(append(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpMsg), 0, 0, 0, 0)), ErrMalformed},
		{"two body sections", withLen(append(bytes.Clone(good), append([]byte{0}, find...)...)), ErrMalformed},
		{"section kind 2", withLen(append(bytes.Clone(good), 2, 0, 0, 0)), ErrMalformed},
		{"document longer than message", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[21:], 5000); return b }), ErrMalformed},
		{"document without NUL", mutate(func(b []byte) []byte { b[len(b)-1] = 7; return b }), ErrMalformed},
		{"truncated body", withLen(bytes.Clone(good[:len(good)-3])), ErrMalformed},
		{"checksum flag without checksum", withLen(append(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpMsg), 1, 0, 0, 0)), ErrMalformed},
		{"sequence size past the end", withLen(append(bytes.Clone(good), 1, 0xff, 0, 0, 0)), ErrMalformed},
		{"sequence with trailing garbage", withLen(append(bytes.Clone(good), append([]byte{1}, func() []byte {
			s := sequence("documents", find)
			s = append(s, 1, 2, 3)
			binary.LittleEndian.PutUint32(s, uint32(len(s)))
			return s
		}()...)...)), ErrMalformed},
		{"OP_QUERY without NUL in namespace", withLen(append(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpQuery), 0, 0, 0, 0, 'a', 'b')), ErrMalformed},
		{"OP_REPLY count mismatch", mutate(func([]byte) []byte {
			r := opReply(find)
			binary.LittleEndian.PutUint32(r[32:], 3)
			return r
		}), ErrMalformed},
		{"OP_COMPRESSED oversize", withLen(append(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpCompressed), 0xdd, 0x07, 0, 0, 0xff, 0xff, 0xff, 0x7f, 1)), ErrFrameTooLarge},
		{"OP_COMPRESSED unknown compressor", withLen(append(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpCompressed), 0xdd, 0x07, 0, 0, 10, 0, 0, 0, 9)), ErrMalformed},
		{"OP_COMPRESSED garbage payload", withLen(append(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpCompressed), 0xdd, 0x07, 0, 0, 10, 0, 0, 0, 2, 1, 2, 3)), ErrMalformed},
		{"OP_COMPRESSED size mismatch", mutate(func([]byte) []byte {
			c := compressed(t, good, wiremessage.CompressorZLib)
			binary.LittleEndian.PutUint32(c[20:], uint32(len(good)-20))
			return c
		}), ErrMalformed},
		{"nested OP_COMPRESSED", mutate(func([]byte) []byte {
			c := compressed(t, good, wiremessage.CompressorSnappy)
			return compressed(t, c, wiremessage.CompressorSnappy)
		}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(tt.frame)
			require.Error(t, err)
			assert.True(t, errors.Is(err, tt.want), "got %v, want %v", err, tt.want)
		})
	}
}

func TestFrameReader(t *testing.T) {
	find := doc(t, bson.D{{Key: "find", Value: "users"}, {Key: "$db", Value: "app"}})
	good := opMsg(0, find)
	big := make([]byte, 16)
	binary.LittleEndian.PutUint32(big, MaxMessageSize+1)
	small := make([]byte, 16)
	binary.LittleEndian.PutUint32(small, 15)

	t.Run("several frames back to back", func(t *testing.T) {
		fr := frameReader{r: bytes.NewReader(append(append(bytes.Clone(good), good...), good...))}
		for i := 0; i < 3; i++ {
			f, h, err := fr.next()
			require.NoError(t, err)
			assert.Equal(t, good, f)
			assert.Equal(t, wiremessage.OpMsg, h.opCode)
		}
		_, _, err := fr.next()
		assert.ErrorIs(t, err, io.EOF)
		assert.False(t, fr.partial)
	})
	t.Run("one byte at a time, and with the error on the last read", func(t *testing.T) {
		for _, r := range []io.Reader{
			iotest.OneByteReader(bytes.NewReader(append(bytes.Clone(good), good...))),
			iotest.DataErrReader(bytes.NewReader(append(bytes.Clone(good), good...))),
			iotest.HalfReader(bytes.NewReader(append(bytes.Clone(good), good...))),
		} {
			fr := frameReader{r: r}
			for i := 0; i < 2; i++ {
				f, _, err := fr.next()
				require.NoError(t, err)
				assert.Equal(t, good, f)
			}
			_, _, err := fr.next()
			assert.ErrorIs(t, err, io.EOF)
			assert.False(t, fr.partial)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		_, _, err := (&frameReader{r: bytes.NewReader(big)}).next()
		assert.ErrorIs(t, err, ErrFrameTooLarge)
	})
	t.Run("shorter than header", func(t *testing.T) {
		_, _, err := (&frameReader{r: bytes.NewReader(small)}).next()
		assert.ErrorIs(t, err, ErrFrameTooSmall)
	})
	t.Run("truncated", func(t *testing.T) {
		fr := frameReader{r: bytes.NewReader(good[:len(good)-2])}
		_, _, err := fr.next()
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.True(t, fr.partial)
	})
	t.Run("announced length does not decide the allocation", func(t *testing.T) {
		h := make([]byte, 16)
		binary.LittleEndian.PutUint32(h, MaxMessageSize)
		fr := frameReader{r: bytes.NewReader(append(h, 1, 2, 3))}
		_, _, err := fr.next()
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.Less(t, cap(fr.buf), 1<<20)
	})
	t.Run("large frame buffer is released", func(t *testing.T) {
		large := opMsg(0, doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "blob", Value: bytes.Repeat([]byte{1}, 2<<20)}}))
		fr := frameReader{r: bytes.NewReader(append(large, good...))}
		_, _, err := fr.next()
		require.NoError(t, err)
		_, _, err = fr.next()
		require.NoError(t, err)
		assert.LessOrEqual(t, cap(fr.buf), keepBuffer)
	})
}

func TestRewriteHello(t *testing.T) {
	reply := doc(t, bson.D{
		{Key: "isWritablePrimary", Value: true},
		{Key: "topologyVersion", Value: bson.D{{Key: "processId", Value: bson.NewObjectID()}, {Key: "counter", Value: int64(3)}}},
		{Key: "hosts", Value: bson.A{"db1:27017", "db2:27017"}},
		{Key: "setName", Value: "rs0"},
		{Key: "setVersion", Value: int32(4)},
		{Key: "primary", Value: "db1:27017"},
		{Key: "me", Value: "db1:27017"},
		{Key: "electionId", Value: bson.NewObjectID()},
		{Key: "lastWrite", Value: bson.D{{Key: "opTime", Value: 1}}},
		{Key: "maxWireVersion", Value: int32(21)},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		{Key: "compression", Value: bson.A{"zstd"}},
		{Key: "ok", Value: 1.0},
	})
	check := func(t *testing.T, out []byte, wantOp wiremessage.OpCode) bson.M {
		t.Helper()
		h := parseHeader(out)
		assert.Equal(t, int32(len(out)), h.length)
		assert.Equal(t, wantOp, h.opCode)
		m, err := decode(out)
		require.NoError(t, err)
		var got bson.M
		require.NoError(t, bson.Unmarshal(m.Body, &got))
		for _, k := range []string{"hosts", "setName", "setVersion", "primary", "me", "electionId", "lastWrite"} {
			assert.NotContains(t, got, k)
		}
		assert.Equal(t, "isdbgrid", got["msg"])
		for _, k := range []string{"isWritablePrimary", "topologyVersion", "maxWireVersion", "logicalSessionTimeoutMinutes", "compression", "ok"} {
			assert.Contains(t, got, k)
		}
		return got
	}
	t.Run("OP_MSG streaming reply keeps moreToCome, drops checksum", func(t *testing.T) {
		in := opMsg(wiremessage.MoreToCome|wiremessage.ChecksumPresent, reply)
		m, err := decode(in)
		require.NoError(t, err)
		out, err := rewriteHello(nil, parseHeader(in), m)
		require.NoError(t, err)
		check(t, out, wiremessage.OpMsg)
		om, _ := decode(out)
		assert.Equal(t, wiremessage.MoreToCome, om.Flags)
		assert.Equal(t, parseHeader(in).requestID, parseHeader(out).requestID)
	})
	t.Run("OP_REPLY to the legacy handshake", func(t *testing.T) {
		in := opReply(reply)
		m, err := decode(in)
		require.NoError(t, err)
		out, err := rewriteHello(nil, parseHeader(in), m)
		require.NoError(t, err)
		check(t, out, wiremessage.OpReply)
		assert.Equal(t, in[16:32], out[16:32], "responseFlags, cursorID and startingFrom are kept")
		assert.Equal(t, int32(9), parseHeader(out).responseTo)
	})
}

func TestCommandMetricsAreBoundedAndAllocationFree(t *testing.T) {
	m := NewMetrics(nil)
	assert.Same(t, m.byCommand["find"], m.command([]byte("find")))
	assert.Same(t, m.other, m.command([]byte("someCommandNobodyKnows")))
	assert.Same(t, m.other, m.command(nil))
	allocs := testing.AllocsPerRun(100, func() { _ = m.command([]byte("insert")) })
	assert.Zero(t, allocs)
}

func TestReplyOK(t *testing.T) {
	for _, tt := range []struct {
		ok   any
		want bool
	}{{1.0, true}, {0.0, false}, {int32(1), true}, {int32(0), false}, {int64(0), false}, {true, true}, {false, false}} {
		d := doc(t, bson.D{{Key: "ok", Value: tt.ok}})
		assert.Equal(t, tt.want, replyOK(bsoncore.Document(d)), "ok: %v", tt.ok)
	}
	assert.True(t, replyOK(bsoncore.Document(doc(t, bson.D{{Key: "x", Value: 1}}))))
}

func TestDecodeAllocatesNothingForPlainMessages(t *testing.T) {
	frame := opMsg(0, doc(t, bson.D{{Key: "find", Value: "users"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: "k"}}}, {Key: "$db", Value: "app"}}))
	allocs := testing.AllocsPerRun(100, func() {
		m, err := decode(frame)
		if err != nil || m.Collection() == nil {
			panic("decode failed")
		}
	})
	assert.Zero(t, allocs)
}
