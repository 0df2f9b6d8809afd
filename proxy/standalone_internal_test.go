package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

func TestStandaloneHello(t *testing.T) {
	for _, tc := range []struct {
		name           string
		reply          bson.D
		standalone, ok bool
	}{
		{"standalone mongod", bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "ok", Value: 1.0}}, true, true},
		{"replica set member", bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "setName", Value: "rs0"}, {Key: "ok", Value: 1.0}}, false, true},
		{"member not yet configured", bson.D{{Key: "isreplicaset", Value: true}, {Key: "ok", Value: 1.0}}, false, true},
		{"mongos", bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "msg", Value: "isdbgrid"}, {Key: "ok", Value: 1.0}}, false, true},
		{"failed reply", bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: "no"}}, false, false},
		{"no ok field", bson.D{{Key: "isWritablePrimary", Value: true}}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			standalone, ok := standaloneHello(doc(t, tc.reply))
			assert.Equal(t, tc.standalone, standalone)
			assert.Equal(t, tc.ok, ok)
		})
	}
}

func TestRetryableWrite(t *testing.T) {
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	for _, tc := range []struct {
		name string
		body bson.D
		want bool
	}{
		{"retryable insert", bson.D{{Key: "insert", Value: "c"}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(3)}, {Key: "$db", Value: "d"}}, true},
		{"in a transaction", bson.D{{Key: "insert", Value: "c"}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(3)},
			{Key: "startTransaction", Value: true}, {Key: "autocommit", Value: false}, {Key: "$db", Value: "d"}}, false},
		{"commitTransaction", bson.D{{Key: "commitTransaction", Value: 1}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(3)},
			{Key: "autocommit", Value: false}, {Key: "$db", Value: "admin"}}, false},
		{"not retryable", bson.D{{Key: "insert", Value: "c"}, {Key: "lsid", Value: lsid}, {Key: "$db", Value: "d"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decode(opMsg(0, doc(t, tc.body)))
			require.NoError(t, err)
			assert.Equal(t, tc.want, retryableWrite(&m))
		})
	}
	q, err := decode(opQuery("d.$cmd", doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "txnNumber", Value: int64(1)}})))
	require.NoError(t, err)
	assert.False(t, retryableWrite(&q), "OP_QUERY is left alone")
}

// TestWithoutTxnNumber re-encodes retryable writes as drivers send them (body and document
// sequence) and as they may (checksum, moreToCome, compressed), and decodes the result.
func TestWithoutTxnNumber(t *testing.T) {
	body := doc(t, bson.D{
		{Key: "update", Value: "users"}, {Key: "ordered", Value: true},
		{Key: "lsid", Value: bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}},
		{Key: "txnNumber", Value: int64(7)}, {Key: "$db", Value: "app"},
	})
	want := doc(t, bson.D{
		{Key: "update", Value: "users"}, {Key: "ordered", Value: true},
		{Key: "lsid", Value: bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}},
		{Key: "$db", Value: "app"},
	})
	updates := sequence("updates",
		doc(t, bson.D{{Key: "q", Value: bson.D{{Key: "_id", Value: "k1"}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}}}}),
		doc(t, bson.D{{Key: "q", Value: bson.D{{Key: "_id", Value: "k2"}}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 2}}}}}}))
	plain := opMsg(0, body, updates)
	for _, tc := range []struct {
		name      string
		frame     []byte
		wantOp    wiremessage.OpCode
		wantFlags wiremessage.MsgFlag
		wantComp  wiremessage.CompressorID
	}{
		{"plain", plain, wiremessage.OpMsg, 0, wiremessage.CompressorNoOp},
		{"checksum dropped, moreToCome kept", opMsg(wiremessage.ChecksumPresent|wiremessage.MoreToCome, body, updates), wiremessage.OpMsg, wiremessage.MoreToCome, wiremessage.CompressorNoOp},
		{"snappy", compressed(t, plain, wiremessage.CompressorSnappy), wiremessage.OpCompressed, 0, wiremessage.CompressorSnappy},
		{"zlib", compressed(t, plain, wiremessage.CompressorZLib), wiremessage.OpCompressed, 0, wiremessage.CompressorZLib},
		{"zstd", compressed(t, plain, wiremessage.CompressorZstd), wiremessage.OpCompressed, 0, wiremessage.CompressorZstd},
		{"noop compressor goes plain", compressed(t, plain, wiremessage.CompressorNoOp), wiremessage.OpMsg, 0, wiremessage.CompressorNoOp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := parseHeader(tc.frame)
			m, err := decode(tc.frame)
			require.NoError(t, err)
			require.True(t, retryableWrite(&m))
			out, err := withoutTxnNumber(make([]byte, 3), in, &m)
			require.NoError(t, err)
			h := parseHeader(out)
			assert.Equal(t, int32(len(out)), h.length)
			assert.Equal(t, tc.wantOp, h.opCode)
			assert.Equal(t, in.requestID, h.requestID)
			assert.Equal(t, in.responseTo, h.responseTo)
			got, err := decode(out)
			require.NoError(t, err)
			assert.Equal(t, tc.wantComp, got.Compressor)
			assert.Equal(t, tc.wantFlags, got.Flags)
			assert.Equal(t, bson.Raw(want), bson.Raw(got.Body))
			assert.False(t, retryableWrite(&got))
			docs, ok, err := got.Sequence("updates")
			require.NoError(t, err)
			require.True(t, ok)
			require.Len(t, docs, 2)
			assert.Equal(t, "k2", bson.Raw(docs[1]).Lookup("q", "_id").StringValue())
		})
	}
}
