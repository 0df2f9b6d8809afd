package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/tandemdb/tandem/proxy/proxytest"
)

// seq is one document sequence of a request under test.
type seq struct {
	id   string
	docs []bson.D
}

// driverMsg builds an OP_MSG as the driver does (x/mongo/driver operation.go and batches.go):
// the body section, then each document sequence through driver.Batches.
func driverMsg(t testing.TB, flags wiremessage.MsgFlag, body bson.D, seqs ...seq) []byte {
	t.Helper()
	b := wiremessage.AppendHeader(nil, 0, 7, 0, wiremessage.OpMsg)
	b = wiremessage.AppendMsgFlags(b, flags)
	b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
	b = append(b, doc(t, body)...)
	for _, s := range seqs {
		batch := driver.Batches{Identifier: s.id}
		for _, d := range s.docs {
			batch.Documents = append(batch.Documents, doc(t, d))
		}
		if len(batch.Documents) == 0 {
			// Batches appends nothing for no documents; an empty sequence is still valid.
			b = append(append(b, 1), sequence(s.id)...)
			continue
		}
		var err error
		_, b, err = batch.AppendBatchSequence(b, len(batch.Documents), 48_000_000)
		require.NoError(t, err)
	}
	return bsoncore.UpdateLength(b, 0, int32(len(b)))
}

func decodeT(t testing.TB, frame []byte) *Message {
	t.Helper()
	m, err := decode(frame)
	require.NoError(t, err)
	return &m
}

func TestSequence(t *testing.T) {
	d1 := doc(t, bson.D{{Key: "_id", Value: "a"}})
	d2 := doc(t, bson.D{{Key: "_id", Value: int32(2)}, {Key: "x", Value: "y"}})
	u1 := doc(t, bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.D{}}})
	body := doc(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "app"}})

	t.Run("sections in any order, checksum, compressed", func(t *testing.T) {
		plain := opMsg(0, body, sequence("documents", d1, d2), sequence("updates", u1))
		before := append([]byte{1}, sequence("documents", d1, d2)...)
		bodyLast := withFrameLen(append(append(wiremessage.AppendMsgFlags(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpMsg), 0), before...), append([]byte{0}, body...)...))
		for name, frame := range map[string][]byte{
			"plain":           plain,
			"body last":       bodyLast,
			"checksum":        opMsg(wiremessage.ChecksumPresent, body, sequence("updates", u1), sequence("documents", d1, d2)),
			"zstd compressed": compressed(t, plain, wiremessage.CompressorZstd),
		} {
			t.Run(name, func(t *testing.T) {
				m := decodeT(t, frame)
				docs, ok, err := m.Sequence("documents")
				require.NoError(t, err)
				require.True(t, ok)
				require.Len(t, docs, 2)
				assert.Equal(t, d1, []byte(docs[0]))
				assert.Equal(t, d2, []byte(docs[1]))
				_, ok, err = m.Sequence("deletes")
				require.NoError(t, err)
				assert.False(t, ok)
				_, ok, err = m.Sequence("document")
				require.NoError(t, err)
				assert.False(t, ok, "identifiers match whole")
			})
		}
	})
	t.Run("empty sequence", func(t *testing.T) {
		docs, ok, err := decodeT(t, opMsg(0, body, sequence("documents"))).Sequence("documents")
		require.NoError(t, err)
		assert.True(t, ok)
		assert.Empty(t, docs)
	})
	t.Run("the same identifier twice", func(t *testing.T) {
		_, _, err := decodeT(t, opMsg(0, body, sequence("documents", d1), sequence("documents", d2))).Sequence("documents")
		assert.ErrorIs(t, err, ErrMalformed)
	})
	t.Run("no sections outside OP_MSG", func(t *testing.T) {
		_, ok, err := decodeT(t, opQuery("app.$cmd", body)).Sequence("documents")
		require.NoError(t, err)
		assert.False(t, ok)
	})
	t.Run("documents point into the frame", func(t *testing.T) {
		frame := opMsg(0, body, sequence("documents", d1))
		docs, _, _ := decodeT(t, frame).Sequence("documents")
		require.Len(t, docs, 1)
		i := bytes.Index(frame, d1)
		assert.Same(t, &frame[i], &docs[0][0])
	})
	t.Run("decode still allocates nothing", func(t *testing.T) {
		frame := opMsg(0, body, sequence("documents", d1, d2))
		allocs := testing.AllocsPerRun(100, func() {
			m, err := decode(frame)
			if err != nil || m.Sequences != 1 {
				panic("decode failed")
			}
		})
		assert.Zero(t, allocs)
	})
}

func withFrameLen(b []byte) []byte { return bsoncore.UpdateLength(b, 0, int32(len(b))) }

// renderKeys renders keys as canonical extended JSON, so a test sees their BSON types.
func renderKeys(keys []bson.RawValue) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.String())
	}
	return out
}

// renderUnkeyed renders an unkeyed statement as "<filter> one|multi [collation=…] [let=…]".
func renderUnkeyed(us []unkeyedWrite) []string {
	var out []string
	for _, u := range us {
		s := u.filter.String()
		if u.multi {
			s += " multi"
		} else {
			s += " one"
		}
		if u.collation != nil {
			s += " collation=" + u.collation.String()
		}
		if u.let != nil {
			s += " let=" + u.let.String()
		}
		out = append(out, s)
	}
	return out
}

// rk renders Go values as renderKeys renders them.
func rk(t testing.TB, vals ...any) []string {
	t.Helper()
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		typ, data, err := bson.MarshalValue(v)
		require.NoError(t, err)
		out = append(out, bson.RawValue{Type: typ, Value: data}.String())
	}
	return out
}

// ru renders a filter (and options) as renderUnkeyed does.
func ru(t testing.TB, filter bson.D, rest string) string {
	t.Helper()
	return bson.Raw(doc(t, filter)).String() + " " + rest
}

func TestParseWrite(t *testing.T) {
	type E = bson.E
	oid := bson.NewObjectID()
	re := bson.Regex{Pattern: "^a", Options: ""}
	ins := func(extra ...E) bson.D {
		return append(bson.D{{Key: "insert", Value: "c"}}, append(extra, E{Key: "$db", Value: "app"})...)
	}
	upd := func(extra ...E) bson.D {
		return append(bson.D{{Key: "update", Value: "c"}}, append(extra, E{Key: "$db", Value: "app"})...)
	}
	del := func(extra ...E) bson.D {
		return append(bson.D{{Key: "delete", Value: "c"}}, append(extra, E{Key: "$db", Value: "app"})...)
	}
	fam := func(extra ...E) bson.D {
		return append(bson.D{{Key: "findAndModify", Value: "c"}}, append(extra, E{Key: "$db", Value: "app"})...)
	}
	setX := bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}
	u := func(q any, opts ...E) bson.D {
		return append(bson.D{{Key: "q", Value: q}, {Key: "u", Value: setX}}, opts...)
	}
	updates := func(stmts ...bson.D) E {
		a := bson.A{}
		for _, s := range stmts {
			a = append(a, s)
		}
		return E{Key: "updates", Value: a}
	}
	d := func(q any, limit any) bson.D { return bson.D{{Key: "q", Value: q}, {Key: "limit", Value: limit}} }
	deletes := func(stmts ...bson.D) E {
		a := bson.A{}
		for _, s := range stmts {
			a = append(a, s)
		}
		return E{Key: "deletes", Value: a}
	}
	id := func(v any) bson.D { return bson.D{{Key: "_id", Value: v}} }
	op := func(name string, v any) bson.D { return bson.D{{Key: name, Value: v}} }
	status := bson.D{{Key: "status", Value: "new"}}

	type want struct {
		op                              string
		keys, unkeyed                   []string
		upsert, missingID, unack, inTxn bool
	}
	tests := []struct {
		name  string
		flags wiremessage.MsgFlag
		body  bson.D
		seqs  []seq
		want  want
	}{
		{name: "insert, documents in the body",
			body: ins(E{Key: "documents", Value: bson.A{id("a"), id(int32(1)), id(oid), id(bson.D{{Key: "a", Value: 1}, {Key: "b", Value: "x"}})}}),
			want: want{op: "insert", keys: rk(t, "a", int32(1), oid, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: "x"}})}},
		{name: "insert, documents in a sequence",
			body: ins(E{Key: "ordered", Value: true}),
			seqs: []seq{{"documents", []bson.D{id(int64(1)), {{Key: "x", Value: 1}, {Key: "_id", Value: 2.5}}}}},
			want: want{op: "insert", keys: rk(t, int64(1), 2.5)}},
		{name: "insert without _id",
			body: ins(E{Key: "documents", Value: bson.A{id("a"), bson.D{{Key: "x", Value: 1}}}}),
			want: want{op: "insert", keys: rk(t, "a"), missingID: true}},
		{name: "insert, empty sequence",
			body: ins(), seqs: []seq{{"documents", nil}},
			want: want{op: "insert"}},
		{name: "insert, unrelated sequence ignored",
			body: ins(E{Key: "documents", Value: bson.A{id("a")}}), seqs: []seq{{"other", []bson.D{id("z")}}},
			want: want{op: "insert", keys: rk(t, "a")}},
		{name: "insert unacknowledged by moreToCome", flags: wiremessage.MoreToCome,
			body: ins(E{Key: "writeConcern", Value: bson.D{{Key: "w", Value: 0}}}), seqs: []seq{{"documents", []bson.D{id("a")}}},
			want: want{op: "insert", keys: rk(t, "a"), unack: true}},
		{name: "insert w: 0 without moreToCome",
			body: ins(E{Key: "documents", Value: bson.A{id("a")}}, E{Key: "writeConcern", Value: bson.D{{Key: "w", Value: 0.0}}}),
			want: want{op: "insert", keys: rk(t, "a"), unack: true}},
		{name: "insert w: majority",
			body: ins(E{Key: "documents", Value: bson.A{id("a")}}, E{Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}}}),
			want: want{op: "insert", keys: rk(t, "a")}},
		{name: "insert in a transaction",
			body: ins(E{Key: "documents", Value: bson.A{id("a")}}, E{Key: "txnNumber", Value: int64(3)}, E{Key: "autocommit", Value: false}),
			want: want{op: "insert", keys: rk(t, "a"), inTxn: true}},
		{name: "retryable insert is not a transaction",
			body: ins(E{Key: "documents", Value: bson.A{id("a")}}, E{Key: "txnNumber", Value: int64(3)}),
			want: want{op: "insert", keys: rk(t, "a")}},

		{name: "update by _id equality",
			body: upd(updates(u(id("a")), u(id(oid)))),
			want: want{op: "update", keys: rk(t, "a", oid)}},
		{name: "update by $eq and $in, other fields too",
			body: upd(updates(u(bson.D{{Key: "_id", Value: op("$eq", int32(5))}, {Key: "x", Value: op("$gt", 1)}}), u(bson.D{{Key: "v", Value: 1}, {Key: "_id", Value: op("$in", bson.A{"a", "b", "a"})}}))),
			want: want{op: "update", keys: rk(t, int32(5), "a", "b", "a")}},
		{name: "update by document _id",
			body: upd(updates(u(id(bson.D{{Key: "tenant", Value: 1}, {Key: "n", Value: "x"}})))),
			want: want{op: "update", keys: rk(t, bson.D{{Key: "tenant", Value: 1}, {Key: "n", Value: "x"}})}},
		{name: "update by _id null",
			body: upd(updates(u(id(nil)))),
			want: want{op: "update", keys: rk(t, bson.Null{})}},
		{name: "update by _id inside $and",
			body: upd(updates(u(bson.D{{Key: "$and", Value: bson.A{status, id(int64(7))}}}))),
			want: want{op: "update", keys: rk(t, int64(7))}},
		{name: "update with $or beside _id",
			body: upd(updates(u(bson.D{{Key: "_id", Value: "a"}, {Key: "$or", Value: bson.A{status, id("b")}}}))),
			want: want{op: "update", keys: rk(t, "a")}},
		{name: "update statements in a sequence, upsert",
			body: upd(E{Key: "ordered", Value: false}),
			seqs: []seq{{"updates", []bson.D{u(id("a"), E{Key: "upsert", Value: true}), u(status, E{Key: "multi", Value: true})}}},
			want: want{op: "update", keys: rk(t, "a"), unkeyed: []string{ru(t, status, "multi")}, upsert: true}},
		{name: "update with numeric flags and a pipeline",
			body: upd(updates(bson.D{{Key: "q", Value: status}, {Key: "u", Value: bson.A{op("$set", op("x", 1))}}, {Key: "multi", Value: int32(1)}, {Key: "upsert", Value: 0.0}})),
			want: want{op: "update", unkeyed: []string{ru(t, status, "multi")}}},
		{name: "update by _id operators other than $eq and $in",
			body: upd(updates(
				u(id(op("$gt", 1))), u(id(op("$ne", 1))), u(id(op("$nin", bson.A{1}))), u(id(op("$regex", "^a"))),
				u(id(op("$exists", true))), u(id(bson.D{{Key: "$eq", Value: 1}, {Key: "$exists", Value: true}})),
				u(id(bson.D{{Key: "a", Value: 1}, {Key: "$b", Value: 1}})))),
			want: want{op: "update", unkeyed: []string{
				ru(t, id(op("$gt", 1)), "one"), ru(t, id(op("$ne", 1)), "one"), ru(t, id(op("$nin", bson.A{1})), "one"),
				ru(t, id(op("$regex", "^a")), "one"), ru(t, id(op("$exists", true)), "one"),
				ru(t, id(bson.D{{Key: "$eq", Value: 1}, {Key: "$exists", Value: true}}), "one"),
				ru(t, id(bson.D{{Key: "a", Value: 1}, {Key: "$b", Value: 1}}), "one")}}},
		{name: "update by values that are not keys",
			body: upd(updates(u(id(re)), u(id(op("$in", bson.A{"a", re}))), u(id(bson.A{1, 2})), u(id(op("$eq", bson.A{1}))), u(id(op("$in", "a"))))),
			want: want{op: "update", unkeyed: []string{
				ru(t, id(re), "one"), ru(t, id(op("$in", bson.A{"a", re})), "one"), ru(t, id(bson.A{1, 2}), "one"),
				ru(t, id(op("$eq", bson.A{1})), "one"), ru(t, id(op("$in", "a")), "one")}}},
		{name: "update with _id twice",
			body: upd(updates(u(bson.D{{Key: "_id", Value: 1}, {Key: "_id", Value: 2}}))),
			want: want{op: "update", unkeyed: []string{ru(t, bson.D{{Key: "_id", Value: 1}, {Key: "_id", Value: 2}}, "one")}}},
		{name: "update with a collation",
			body: upd(updates(
				u(id("a"), E{Key: "collation", Value: bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: 2}}}),
				u(id("b"), E{Key: "collation", Value: bson.D{{Key: "locale", Value: "simple"}}}))),
			want: want{op: "update", keys: rk(t, "b"), unkeyed: []string{
				ru(t, id("a"), "one collation="+bson.Raw(doc(t, bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: 2}})).String())}}},
		{name: "update with let and c",
			body: upd(updates(u(status), u(status, E{Key: "c", Value: bson.D{{Key: "y", Value: 2}}})), E{Key: "let", Value: bson.D{{Key: "x", Value: 1}}}),
			want: want{op: "update", unkeyed: []string{
				ru(t, status, "one let="+bson.Raw(doc(t, bson.D{{Key: "x", Value: 1}})).String()),
				ru(t, status, "one let="+bson.Raw(doc(t, bson.D{{Key: "y", Value: 2}})).String())}}},

		{name: "delete by _id and by filter",
			body: del(deletes(d(id("a"), int32(1)), d(status, int32(0)), d(id(op("$in", bson.A{1, 2})), 0.0))),
			want: want{op: "delete", keys: rk(t, "a", int32(1), int32(2)), unkeyed: []string{ru(t, status, "multi")}}},
		{name: "delete statements in a sequence",
			body: del(), seqs: []seq{{"deletes", []bson.D{d(id(oid), int64(1)), d(bson.D{}, int64(1))}}},
			want: want{op: "delete", keys: rk(t, oid), unkeyed: []string{ru(t, bson.D{}, "one")}}},

		{name: "findAndModify by _id",
			body: fam(E{Key: "query", Value: id("a")}, E{Key: "update", Value: setX}, E{Key: "new", Value: true}),
			want: want{op: "findAndModify", keys: rk(t, "a")}},
		{name: "findandmodify, lowercase, upsert",
			body: bson.D{{Key: "findandmodify", Value: "c"}, {Key: "query", Value: status}, {Key: "update", Value: setX}, {Key: "upsert", Value: true}},
			want: want{op: "findAndModify", unkeyed: []string{ru(t, status, "one")}, upsert: true}},
		{name: "findAndModify remove without query",
			body: fam(E{Key: "remove", Value: true}, E{Key: "sort", Value: op("x", 1)}),
			want: want{op: "findAndModify", unkeyed: []string{ru(t, bson.D{}, "one")}}},
		{name: "findAndModify with collation and let",
			body: fam(E{Key: "query", Value: id("a")}, E{Key: "remove", Value: true}, E{Key: "collation", Value: bson.D{{Key: "locale", Value: "fr"}}}, E{Key: "let", Value: op("v", 1)}),
			want: want{op: "findAndModify", unkeyed: []string{ru(t, id("a"), "one collation="+bson.Raw(doc(t, op("locale", "fr"))).String()+" let="+bson.Raw(doc(t, op("v", 1))).String())}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := driverMsg(t, tt.flags, tt.body, tt.seqs...)
			w, err := parseWrite(decodeT(t, frame))
			require.NoError(t, err)
			// Everything returned is a copy: wipe the frame before looking.
			for i := range frame {
				frame[i] = 0xee
			}
			assert.Equal(t, tt.want.op, w.op)
			assert.Equal(t, tt.want.keys, nilIfEmpty(renderKeys(w.keys)), "keys")
			assert.Equal(t, tt.want.unkeyed, renderUnkeyed(w.unkeyed), "unkeyed")
			assert.Equal(t, tt.want.upsert, w.upsert, "upsert")
			assert.Equal(t, tt.want.missingID, w.missingID, "missingID")
			assert.Equal(t, tt.want.unack, w.unacknowledged, "unacknowledged")
			assert.Equal(t, tt.want.inTxn, w.inTxn, "inTxn")
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestParseWriteErrors(t *testing.T) {
	type E = bson.E
	one := bson.D{{Key: "_id", Value: 1}}
	okU := bson.D{{Key: "q", Value: one}, {Key: "u", Value: bson.D{}}}
	tests := []struct {
		name string
		body bson.D
		seqs []seq
		want string // a regular expression the error must match
	}{
		{"insert without documents", bson.D{{Key: "insert", Value: "c"}}, nil, `^insert: no documents`},
		{"insert documents not an array", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: one}}, nil, `^insert: documents is embedded document, not an array`},
		{"insert document not a document", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{one, "x"}}}, nil, `^insert: documents\[1\] is string`},
		{"insert documents in body and sequence", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{one}}}, []seq{{"documents", []bson.D{one}}}, `both in the body and a document sequence`},
		{"update without q", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{okU, bson.D{{Key: "u", Value: bson.D{}}}}}}, nil, `^update: updates\[1\]\.q is missing`},
		{"update q not a document", bson.D{{Key: "update", Value: "c"}}, []seq{{"updates", []bson.D{{{Key: "q", Value: "a"}, {Key: "u", Value: bson.D{}}}}}}, `^update: updates\[0\]\.q is string, want a document`},
		{"update without u", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: one}}}}}, nil, `^update: updates\[0\]\.u is missing`},
		{"update u a string", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: one}, {Key: "u", Value: "x"}}}}}, nil, `updates\[0\]\.u is string, want a document or a pipeline`},
		{"update upsert a string", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{append(okU, E{Key: "upsert", Value: "yes"})}}}, nil, `updates\[0\]\.upsert is string, want a boolean`},
		{"update multi a document", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{append(okU, E{Key: "multi", Value: bson.D{}})}}}, nil, `updates\[0\]\.multi is embedded document`},
		{"update c not a document", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{append(okU, E{Key: "c", Value: 1})}}}, nil, `updates\[0\]\.c is 32-bit integer`},
		{"update collation a string", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{append(okU, E{Key: "collation", Value: "en"})}}}, nil, `updates\[0\]\.collation is string`},
		{"update statements not an array", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: "x"}}, nil, `^update: updates is string`},
		{"update let not a document", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{okU}}, {Key: "let", Value: 1}}, nil, `^update: let is 32-bit integer`},
		{"delete without limit", bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: one}}}}}, nil, `^delete: deletes\[0\]\.limit is missing`},
		{"delete limit 2", bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: one}, {Key: "limit", Value: 2}}}}}, nil, `deletes\[0\]\.limit is 32-bit integer, want 0 or 1`},
		{"delete limit a string", bson.D{{Key: "delete", Value: "c"}}, []seq{{"deletes", []bson.D{{{Key: "q", Value: one}, {Key: "limit", Value: "1"}}}}}, `deletes\[0\]\.limit is string`},
		{"delete limit 0.5", bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{bson.D{{Key: "q", Value: one}, {Key: "limit", Value: 0.5}}}}}, nil, `deletes\[0\]\.limit is double`},
		{"findAndModify query a string", bson.D{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: "x"}}, nil, `^findAndModify: query is string, not a document`},
		{"findandmodify upsert an array", bson.D{{Key: "findandmodify", Value: "c"}, {Key: "upsert", Value: bson.A{}}}, nil, `^findandmodify: upsert is array`},
		{"findAndModify collation a number", bson.D{{Key: "findAndModify", Value: "c"}, {Key: "collation", Value: 1}}, nil, `^findAndModify: collation is 32-bit integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseWrite(decodeT(t, driverMsg(t, 0, tt.body, tt.seqs...)))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrMalformedCommand)
			assert.Regexp(t, regexp.MustCompile(tt.want), err.Error())
		})
	}
	t.Run("not a write", func(t *testing.T) {
		for _, name := range []string{"find", "aggregate", "Insert", "bulkWrite"} {
			_, err := parseWrite(decodeT(t, driverMsg(t, 0, bson.D{{Key: name, Value: "c"}})))
			assert.ErrorIs(t, err, errNotWrite, name)
		}
	})
	t.Run("statement that is not BSON", func(t *testing.T) {
		bad := doc(t, bson.D{{Key: "q", Value: one}, {Key: "limit", Value: 1}})
		bad[4] = 0x99 // q's type byte: no such BSON type
		frame := opMsg(0, doc(t, bson.D{{Key: "delete", Value: "c"}}), sequence("deletes", bad))
		_, err := parseWrite(decodeT(t, frame))
		assert.ErrorIs(t, err, ErrMalformedCommand)
	})
}

func TestReplyKeys(t *testing.T) {
	oid := bson.NewObjectID()
	tests := []struct {
		name  string
		op    string
		reply bson.D
		want  []string
	}{
		{"update with upserts", "update", bson.D{{Key: "n", Value: 3}, {Key: "nModified", Value: 1},
			{Key: "upserted", Value: bson.A{bson.D{{Key: "index", Value: 0}, {Key: "_id", Value: oid}}, bson.D{{Key: "index", Value: 2}, {Key: "_id", Value: "k"}}}},
			{Key: "ok", Value: 1.0}}, rk(t, oid, "k")},
		{"update without upserts", "update", bson.D{{Key: "n", Value: 1}, {Key: "nModified", Value: 1}, {Key: "ok", Value: 1.0}}, nil},
		{"update upserted not an array", "update", bson.D{{Key: "upserted", Value: "x"}, {Key: "ok", Value: 1.0}}, nil},
		{"update upserted entry without _id", "update", bson.D{{Key: "upserted", Value: bson.A{bson.D{{Key: "index", Value: 0}}, 5}}}, nil},
		{"findAndModify value", "findAndModify", bson.D{
			{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: 1}, {Key: "updatedExisting", Value: true}}},
			{Key: "value", Value: bson.D{{Key: "_id", Value: int64(9)}, {Key: "x", Value: 1}}}, {Key: "ok", Value: 1.0}}, rk(t, int64(9))},
		{"findAndModify upsert, old value", "findAndModify", bson.D{
			{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: 1}, {Key: "updatedExisting", Value: false}, {Key: "upserted", Value: oid}}},
			{Key: "value", Value: nil}, {Key: "ok", Value: 1.0}}, rk(t, oid)},
		{"findAndModify upsert, new value", "findAndModify", bson.D{
			{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: 1}, {Key: "upserted", Value: "u"}}},
			{Key: "value", Value: bson.D{{Key: "_id", Value: "u"}}}, {Key: "ok", Value: 1.0}}, rk(t, "u", "u")},
		{"findAndModify no match", "findAndModify", bson.D{
			{Key: "lastErrorObject", Value: bson.D{{Key: "n", Value: 0}}}, {Key: "value", Value: nil}, {Key: "ok", Value: 1.0}}, nil},
		{"findAndModify projection without _id", "findAndModify", bson.D{{Key: "value", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "ok", Value: 1.0}}, nil},
		{"insert", "insert", bson.D{{Key: "n", Value: 1}, {Key: "ok", Value: 1.0}}, nil},
		{"delete", "delete", bson.D{{Key: "n", Value: 1}, {Key: "ok", Value: 1.0}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply := doc(t, tt.reply)
			keys := replyKeys(tt.op, reply)
			for i := range reply {
				reply[i] = 0xee
			}
			assert.Equal(t, tt.want, nilIfEmpty(renderKeys(keys)))
		})
	}
	t.Run("truncated reply", func(t *testing.T) {
		reply := doc(t, bson.D{{Key: "upserted", Value: bson.A{bson.D{{Key: "_id", Value: "a"}}}}})
		for n := 0; n < len(reply); n++ {
			_ = replyKeys("update", reply[:n])
			_ = replyKeys("findAndModify", reply[:n])
		}
	})
}

func TestParseKeyLookup(t *testing.T) {
	type E = bson.E
	oid := bson.NewObjectID()
	re := bson.Regex{Pattern: "a"}
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}}
	find := func(filter any, extra ...E) bson.D {
		b := bson.D{{Key: "find", Value: "c"}}
		if filter != nil {
			b = append(b, E{Key: "filter", Value: filter})
		}
		return append(b, append(extra, E{Key: "lsid", Value: lsid}, E{Key: "$db", Value: "app"})...)
	}
	id := func(v any) bson.D { return bson.D{{Key: "_id", Value: v}} }
	op := func(name string, v any) bson.D { return bson.D{{Key: name, Value: v}} }

	type want struct {
		keys             []string
		limit, batchSize int64
		singleBatch      bool
	}
	served := []struct {
		name string
		body bson.D
		want want
	}{
		{"FindOne by _id, as the driver sends it", find(id("k"),
			E{Key: "limit", Value: int64(1)}, E{Key: "singleBatch", Value: true},
			E{Key: "$clusterTime", Value: bson.D{{Key: "clusterTime", Value: bson.Timestamp{T: 1, I: 1}}}},
			E{Key: "$readPreference", Value: op("mode", "primaryPreferred")}),
			want{keys: rk(t, "k"), limit: 1, batchSize: -1, singleBatch: true}},
		{"$eq", find(id(op("$eq", oid))), want{keys: rk(t, oid), batchSize: -1}},
		{"$in deduplicated across number types", find(id(op("$in", bson.A{int32(1), int32(2), int32(1), int64(2), 3.0, 1.5, "1", 1.5, -0.0, int32(0)}))),
			want{keys: rk(t, int32(1), int32(2), 3.0, 1.5, "1", -0.0), batchSize: -1}},
		{"$in empty", find(id(op("$in", bson.A{}))), want{keys: []string{}, batchSize: -1}},
		{"document _id", find(id(bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}})), want{keys: rk(t, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}), batchSize: -1}},
		{"options that do not change the result", find(id(int64(4)),
			E{Key: "batchSize", Value: int32(0)}, E{Key: "limit", Value: 2.0}, E{Key: "comment", Value: "hi"}, E{Key: "maxTimeMS", Value: int64(100)},
			E{Key: "readConcern", Value: op("level", "majority")}, E{Key: "apiVersion", Value: "1"}, E{Key: "apiStrict", Value: true},
			E{Key: "apiDeprecationErrors", Value: false}),
			want{keys: rk(t, int64(4)), limit: 2, batchSize: 0}},
		{"readConcern local", find(id(1), E{Key: "readConcern", Value: op("level", "local")}), want{keys: rk(t, int32(1)), batchSize: -1}},
		{"readConcern available", find(id(1), E{Key: "readConcern", Value: op("level", "available")}), want{keys: rk(t, int32(1)), batchSize: -1}},
		{"readConcern empty", find(id(1), E{Key: "readConcern", Value: bson.D{}}), want{keys: rk(t, int32(1)), batchSize: -1}},
	}
	for _, tt := range served {
		t.Run(tt.name, func(t *testing.T) {
			frame := driverMsg(t, 0, tt.body)
			l, ok := parseKeyLookup(decodeT(t, frame))
			require.True(t, ok)
			for i := range frame {
				frame[i] = 0xee
			}
			got := renderKeys(l.keys)
			assert.Equal(t, tt.want, want{keys: got, limit: l.limit, batchSize: l.batchSize, singleBatch: l.singleBatch})
		})
	}

	notServed := map[string]bson.D{
		"no filter":                find(nil),
		"empty filter":             find(bson.D{}),
		"filter on another field":  find(op("x", 1)),
		"another field beside _id": find(bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}}),
		"_id twice":                find(bson.D{{Key: "_id", Value: 1}, {Key: "_id", Value: 1}}),
		"$gt":                      find(id(op("$gt", 1))),
		"$eq and $exists":          find(id(bson.D{{Key: "$eq", Value: 1}, {Key: "$exists", Value: true}})),
		"$in and $nin":             find(id(bson.D{{Key: "$in", Value: bson.A{1}}, {Key: "$nin", Value: bson.A{2}}})),
		"regex":                    find(id(re)),
		"$eq regex":                find(id(op("$eq", re))),
		"$in with a regex":         find(id(op("$in", bson.A{"a", re}))),
		"$in not an array":         find(id(op("$in", 1))),
		"array":                    find(id(bson.A{1})),
		"null":                     find(id(nil)),
		"decimal":                  find(id(op("$in", bson.A{1, bson.NewDecimal128(0, 1)}))),
		"symbol":                   find(id(bson.Symbol("a"))),
		"operator document":        find(id(bson.D{{Key: "a", Value: 1}, {Key: "$b", Value: 1}})),
		"$and":                     find(op("$and", bson.A{id(1)})),
		"filter not a document":    find("x"),
		"collection by UUID":       {{Key: "find", Value: bson.Binary{Subtype: 4, Data: make([]byte, 16)}}, {Key: "filter", Value: id(1)}},
		"limit negative":           find(id(1), E{Key: "limit", Value: int64(-1)}),
		"limit fractional":         find(id(1), E{Key: "limit", Value: 1.5}),
		"limit a string":           find(id(1), E{Key: "limit", Value: "1"}),
		"limit twice":              find(id(1), E{Key: "limit", Value: 1}, E{Key: "limit", Value: 2}),
		"batchSize negative":       find(id(1), E{Key: "batchSize", Value: int32(-5)}),
		"singleBatch a number":     find(id(1), E{Key: "singleBatch", Value: 1}),
		"readConcern snapshot":     find(id(1), E{Key: "readConcern", Value: op("level", "snapshot")}),
		"readConcern linearizable": find(id(1), E{Key: "readConcern", Value: op("level", "linearizable")}),
		"causal read":              find(id(1), E{Key: "readConcern", Value: bson.D{{Key: "level", Value: "local"}, {Key: "afterClusterTime", Value: bson.Timestamp{T: 1}}}}),
		"readConcern a string":     find(id(1), E{Key: "readConcern", Value: "local"}),
		"not find":                 {{Key: "aggregate", Value: "c"}, {Key: "filter", Value: id(1)}},
	}
	for _, opt := range []string{"projection", "sort", "skip", "hint", "collation", "txnNumber", "startTransaction",
		"autocommit", "tailable", "let", "returnKey", "showRecordId", "min", "max", "allowPartialResults",
		"noCursorTimeout", "awaitData", "oplogReplay", "allowDiskUse", "readOnce", "$_resumeAfter", "someFutureOption"} {
		notServed["option "+opt] = find(id(1), E{Key: opt, Value: bson.D{}})
	}
	for name, body := range notServed {
		t.Run("not served: "+name, func(t *testing.T) {
			_, ok := parseKeyLookup(decodeT(t, driverMsg(t, 0, body)))
			assert.False(t, ok)
		})
	}
	t.Run("not served: moreToCome, sequences, OP_QUERY", func(t *testing.T) {
		body := find(id(1))
		for name, frame := range map[string][]byte{
			"moreToCome": driverMsg(t, wiremessage.MoreToCome, body),
			"sequence":   driverMsg(t, 0, body, seq{"documents", []bson.D{id(1)}}),
			"OP_QUERY":   opQuery("app.$cmd", doc(t, body)),
		} {
			_, ok := parseKeyLookup(decodeT(t, frame))
			assert.False(t, ok, name)
		}
	})
	t.Run("compressed", func(t *testing.T) {
		l, ok := parseKeyLookup(decodeT(t, compressed(t, driverMsg(t, 0, find(id("z"))), wiremessage.CompressorSnappy)))
		require.True(t, ok)
		assert.Equal(t, rk(t, "z"), renderKeys(l.keys))
	})
}

func TestKeyValue(t *testing.T) {
	oid := bson.NewObjectID()
	now := bson.NewDateTimeFromTime(time.Now())
	good := []any{"s", int32(1), int64(2), 2.5, oid, true, now, bson.Binary{Subtype: 0, Data: []byte("x")},
		bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: bson.D{{Key: "c", Value: "d"}}}},
		bson.D{{Key: "a", Value: bson.A{int32(1), "x"}}}, bson.NewDecimal128(1, 2), bson.MinKey{}, bson.MaxKey{},
		bson.Timestamp{T: 5, I: 6}}
	for _, v := range good {
		t.Run(fmt.Sprintf("%T", v), func(t *testing.T) {
			typ, data, err := bson.MarshalValue(v)
			require.NoError(t, err)
			got, err := keyValue(bson.RawValue{Type: typ, Value: data})
			require.NoError(t, err)
			assert.Equal(t, v, got)
		})
	}
	for _, v := range []any{bson.Null{}, bson.Regex{Pattern: "a"}, bson.A{1}, bson.Undefined{}} {
		typ, data, err := bson.MarshalValue(v)
		require.NoError(t, err)
		_, err = keyValue(bson.RawValue{Type: typ, Value: data})
		assert.Error(t, err, "%T", v)
	}
	_, err := keyValue(bson.RawValue{Type: bson.TypeString, Value: []byte{9, 0, 0, 0, 'a'}})
	assert.Error(t, err, "truncated string")
	_, err = keyValue(bson.RawValue{})
	assert.Error(t, err, "zero value")
}

// recordRequests serves a forwarder to upstream that keeps a copy of every request frame.
func recordRequests(t *testing.T, upstream string) (addr string, requests func() [][]byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var frames [][]byte
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, up)
				c.Close()
			}()
			go func() {
				defer wg.Done()
				defer up.Close()
				fr := frameReader{r: c}
				for {
					frame, _, err := fr.next()
					if err != nil {
						return
					}
					mu.Lock()
					frames = append(frames, bytes.Clone(frame))
					mu.Unlock()
					if _, err := up.Write(frame); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return slicesClone(frames)
	}
}

func slicesClone(f [][]byte) [][]byte { return append([][]byte(nil), f...) }

// TestWritesAndLookupsFromTheGoDriver reads what the Go driver v2 itself sends, compressed,
// for the writes and finds an application makes.
func TestWritesAndLookupsFromTheGoDriver(t *testing.T) {
	fake, err := proxytest.StartFake(proxytest.WithCompressors("zstd"))
	require.NoError(t, err)
	t.Cleanup(fake.Close)
	addr, requests := recordRequests(t, fake.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + addr + "/?directConnection=true&compressors=zstd"))
	require.NoError(t, err)
	defer func() { _ = client.Disconnect(context.Background()) }()
	coll := client.Database("app").Collection("c")
	oid := bson.NewObjectID()

	type step struct {
		name string
		run  func() error
		// check looks at the request the step sent.
		check func(t *testing.T, m *Message)
	}
	wantWrite := func(op string, keys []string, unkeyed []string, upsert bool) func(*testing.T, *Message) {
		return func(t *testing.T, m *Message) {
			w, err := parseWrite(m)
			require.NoError(t, err)
			assert.Equal(t, op, w.op)
			if keys != nil {
				assert.Equal(t, keys, renderKeys(w.keys))
			}
			assert.Equal(t, unkeyed, renderUnkeyed(w.unkeyed))
			assert.Equal(t, upsert, w.upsert)
		}
	}
	ignore := func(_ any, err error) error { return nil }
	status := bson.D{{Key: "status", Value: "new"}}
	steps := []step{
		{"InsertMany", func() error {
			_, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "_id", Value: oid}}, bson.D{{Key: "x", Value: 1}}})
			return err
		}, func(t *testing.T, m *Message) {
			assert.Equal(t, wiremessage.CompressorZstd, m.Compressor)
			assert.Equal(t, 1, m.Sequences, "the driver sends the documents as a sequence")
			w, err := parseWrite(m)
			require.NoError(t, err)
			require.Len(t, w.keys, 3, "the driver gave the third document an _id")
			assert.Equal(t, rk(t, "a", oid), renderKeys(w.keys[:2]))
			assert.False(t, w.missingID)
		}},
		{"UpdateOne upsert", func() error {
			return ignore(coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: status}}, options.UpdateOne().SetUpsert(true)))
		}, wantWrite("update", rk(t, "a"), nil, true)},
		{"UpdateMany", func() error {
			return ignore(coll.UpdateMany(ctx, status, bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: "old"}}}}))
		}, wantWrite("update", nil, []string{ru(t, status, "multi")}, false)},
		{"DeleteMany by $in", func() error {
			return ignore(coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"a", "b"}}}}}))
		}, wantWrite("delete", rk(t, "a", "b"), nil, false)},
		{"DeleteOne", func() error { return ignore(coll.DeleteOne(ctx, status)) }, wantWrite("delete", nil, []string{ru(t, status, "one")}, false)},
		{"FindOneAndUpdate", func() error {
			_ = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: int32(3)}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}).Err()
			return nil
		}, wantWrite("findAndModify", rk(t, int32(3)), nil, false)},
		{"FindOneAndDelete", func() error {
			_ = coll.FindOneAndDelete(ctx, status).Err()
			return nil
		}, wantWrite("findAndModify", nil, []string{ru(t, status, "one")}, false)},
		{"BulkWrite updates", func() error {
			return ignore(coll.BulkWrite(ctx, []mongo.WriteModel{
				mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: "p"}}).SetUpdate(bson.D{{Key: "$set", Value: status}}),
				mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: "q"}}).SetReplacement(status).SetUpsert(true),
			}))
		}, func(t *testing.T, m *Message) {
			assert.Equal(t, 1, m.Sequences, "the driver sends the updates as a sequence")
			wantWrite("update", rk(t, "p", "q"), nil, true)(t, m)
		}},
		{"FindOne", func() error {
			_ = coll.FindOne(ctx, bson.D{{Key: "_id", Value: "k1"}}).Err()
			return nil
		}, func(t *testing.T, m *Message) {
			l, ok := parseKeyLookup(m)
			require.True(t, ok)
			assert.Equal(t, rk(t, "k1"), renderKeys(l.keys))
			assert.Equal(t, int64(1), l.limit)
			assert.True(t, l.singleBatch)
		}},
		{"Find $in", func() error {
			cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"k1", "k2"}}}}})
			if err == nil {
				_ = cur.Close(ctx)
			}
			return err
		}, func(t *testing.T, m *Message) {
			l, ok := parseKeyLookup(m)
			require.True(t, ok)
			assert.Equal(t, rk(t, "k1", "k2"), renderKeys(l.keys))
		}},
		{"Find with a projection", func() error {
			cur, err := coll.Find(ctx, bson.D{{Key: "_id", Value: "k1"}}, options.Find().SetProjection(bson.D{{Key: "x", Value: 1}}))
			if err == nil {
				_ = cur.Close(ctx)
			}
			return err
		}, func(t *testing.T, m *Message) {
			_, ok := parseKeyLookup(m)
			assert.False(t, ok)
		}},
		{"InsertOne unacknowledged", func() error {
			c := client.Database("app").Collection("c", options.Collection().SetWriteConcern(writeconcern.Unacknowledged()))
			_, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "w0"}})
			return err
		}, func(t *testing.T, m *Message) {
			assert.True(t, m.MoreToCome())
			w, err := parseWrite(m)
			require.NoError(t, err)
			assert.Equal(t, rk(t, "w0"), renderKeys(w.keys))
			assert.True(t, w.unacknowledged)
		}},
	}
	isApp := func(m *Message) bool {
		switch string(m.Name) {
		case "hello", "isMaster", "ismaster", "endSessions", "ping":
			return false
		}
		return true
	}
	for _, s := range steps {
		before := len(requests())
		require.NoError(t, s.run(), s.name)
		var got []*Message
		require.Eventually(t, func() bool {
			got = got[:0]
			for _, frame := range requests()[before:] {
				if m, err := decode(frame); err == nil && isApp(&m) {
					got = append(got, &m)
				}
			}
			return len(got) > 0
		}, 5*time.Second, 5*time.Millisecond, s.name)
		t.Run(s.name, func(t *testing.T) {
			require.Len(t, got, 1, "one command")
			s.check(t, got[0])
		})
	}
}

// FuzzParseWrite feeds arbitrary OP_MSG bodies and sequences to parseWrite and replyKeys: they
// must return an answer or an error, never panic, and what they return must be valid BSON that
// does not share memory with the frame.
func FuzzParseWrite(f *testing.F) {
	one := bson.D{{Key: "_id", Value: 1}}
	seeds := []struct {
		body bson.D
		seq  seq
	}{
		{bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{one, bson.D{{Key: "x", Value: 1}}}}}, seq{}},
		{bson.D{{Key: "insert", Value: "c"}}, seq{"documents", []bson.D{one, {{Key: "_id", Value: bson.D{{Key: "a", Value: 1}}}}}}},
		{bson.D{{Key: "update", Value: "c"}}, seq{"updates", []bson.D{{{Key: "q", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{1, "a"}}}}}}, {Key: "u", Value: bson.D{}}, {Key: "upsert", Value: true}}}}},
		{bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{{Key: "q", Value: bson.D{{Key: "$and", Value: bson.A{one}}}}, {Key: "u", Value: bson.A{}}, {Key: "collation", Value: bson.D{{Key: "locale", Value: "simple"}}}}}}}, seq{}},
		{bson.D{{Key: "delete", Value: "c"}}, seq{"deletes", []bson.D{{{Key: "q", Value: bson.D{{Key: "x", Value: 1}}}, {Key: "limit", Value: 0}}}}},
		{bson.D{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$eq", Value: "a"}}}}}, {Key: "upsert", Value: true}, {Key: "let", Value: one}}, seq{}},
		{bson.D{{Key: "update", Value: "c"}, {Key: "upserted", Value: bson.A{bson.D{{Key: "index", Value: 0}, {Key: "_id", Value: 1}}}}}, seq{}},
		{bson.D{{Key: "findAndModify", Value: "c"}, {Key: "value", Value: one}, {Key: "lastErrorObject", Value: bson.D{{Key: "upserted", Value: 2}}}}, seq{}},
	}
	for _, s := range seeds {
		var seqDocs []byte
		for _, d := range s.seq.docs {
			seqDocs = append(seqDocs, doc(f, d)...)
		}
		f.Add(doc(f, s.body), s.seq.id, seqDocs)
	}
	f.Fuzz(func(t *testing.T, body []byte, id string, docs []byte) {
		frame := wiremessage.AppendMsgFlags(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpMsg), 0)
		frame = append(append(frame, 0), body...)
		if id != "" {
			s := sequence(id)
			s = append(s, docs...)
			frame = append(append(frame, 1), bsoncore.UpdateLength(s, 0, int32(len(s)))...)
		}
		frame = withFrameLen(frame)
		m, err := decode(frame)
		if err != nil {
			return
		}
		w, _ := parseWrite(&m)
		keys := append(w.keys, replyKeys("update", m.Body)...)
		keys = append(keys, replyKeys("findAndModify", m.Body)...)
		var raws [][]byte
		for _, u := range w.unkeyed {
			raws = append(raws, u.filter, u.collation, u.let)
		}
		snapshot := fmt.Sprint(renderKeys(keys), renderUnkeyed(w.unkeyed))
		for i := range frame {
			frame[i] = 0xee
		}
		if again := fmt.Sprint(renderKeys(keys), renderUnkeyed(w.unkeyed)); again != snapshot {
			t.Fatalf("results share memory with the frame: %s, then %s", snapshot, again)
		}
		for _, k := range keys {
			if err := k.Validate(); err != nil {
				t.Fatalf("invalid key %v: %v", k, err)
			}
			if _, err := keyValue(k); err != nil {
				switch k.Type {
				case bson.TypeNull, bson.TypeUndefined, bson.TypeRegex, bson.TypeArray:
				default:
					t.Fatalf("key %v: %v", k, err)
				}
			}
		}
		for _, r := range raws {
			if r != nil {
				if err := bson.Raw(r).Validate(); err != nil {
					t.Fatalf("invalid document: %v", err)
				}
			}
		}
	})
}

// FuzzKeyLookup feeds find bodies to parseKeyLookup: either a whole body, or (idType not 0) a
// find whose filter is {_id: <idType, idValue>} followed by body's bytes as more elements. It
// must never panic, and a lookup it accepts must have valid, distinct keys that keyValue converts.
func FuzzKeyLookup(f *testing.F) {
	for _, b := range []bson.D{
		{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: "a"}}}, {Key: "limit", Value: int64(1)}, {Key: "singleBatch", Value: true}, {Key: "$db", Value: "app"}},
		{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{1, int64(1), 1.0, "x", bson.D{{Key: "a", Value: 1}}}}}}}}, {Key: "batchSize", Value: 2}},
		{{Key: "find", Value: "c"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$eq", Value: bson.NewObjectID()}}}}}, {Key: "readConcern", Value: bson.D{{Key: "level", Value: "majority"}}}},
	} {
		f.Add(doc(f, b), byte(0), []byte(nil))
	}
	for _, v := range []any{"k", int32(1), bson.D{{Key: "$in", Value: bson.A{1, 2.0, int64(2), "2"}}}, bson.D{{Key: "$eq", Value: bson.D{{Key: "a", Value: "b"}}}}} {
		typ, data, err := bson.MarshalValue(v)
		require.NoError(f, err)
		extra := doc(f, bson.D{{Key: "limit", Value: 1}, {Key: "$db", Value: "app"}})
		f.Add(extra[4:len(extra)-1], byte(typ), data)
	}
	f.Fuzz(func(t *testing.T, body []byte, idType byte, idValue []byte) {
		if idType != 0 {
			filter := append([]byte{0, 0, 0, 0, idType, '_', 'i', 'd', 0}, idValue...)
			filter = append(filter, 0)
			filter = bsoncore.UpdateLength(filter, 0, int32(len(filter)))
			b := bsoncore.AppendStringElement([]byte{0, 0, 0, 0}, "find", "c")
			b = bsoncore.AppendDocumentElement(b, "filter", filter)
			b = append(append(b, body...), 0)
			body = bsoncore.UpdateLength(b, 0, int32(len(b)))
		}
		frame := wiremessage.AppendMsgFlags(wiremessage.AppendHeader(nil, 0, 1, 0, wiremessage.OpMsg), 0)
		frame = withFrameLen(append(append(frame, 0), body...))
		m, err := decode(frame)
		if err != nil {
			return
		}
		l, ok := parseKeyLookup(&m)
		if !ok {
			return
		}
		seen := map[string]bool{}
		for _, k := range l.keys {
			c := canonicalKey(bsoncore.Value{Type: bsoncore.Type(k.Type), Data: k.Value})
			if seen[c] {
				t.Fatalf("key %v twice", k)
			}
			seen[c] = true
			if _, err := keyValue(k); err != nil {
				t.Fatalf("key %v: %v", k, err)
			}
		}
		if l.limit < 0 || l.batchSize < -1 {
			t.Fatalf("limit %d, batchSize %d", l.limit, l.batchSize)
		}
	})
}
