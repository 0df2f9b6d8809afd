package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/cdc"
)

// The DynamoDB Streams source against fakeStreams: shard splits, closed shards, parents before
// children, expired iterators, trimmed history, a disabled or deleted stream, bad records and
// bad positions, none of which moto can show.

// fakeStore is a DynamoStore over table "t" keyed by pk; the fake tests never reach DynamoDB
// with it: it only decodes record keys.
func fakeStore(t testing.TB) *adapters.DynamoStore {
	t.Helper()
	s, err := adapters.NewDynamoStore(context.Background(), "t", "pk", adapters.DynamoClient(dynamodb.New(dynamodb.Options{Region: "us-east-1"})))
	require.NoError(t, err)
	return s
}

// dynRecv is a delivered change with its shard-free identity: the key.
type dynRecv struct {
	keys     []string
	caughtUp int // CaughtUp batches seen
	last     cdc.Position
}

func (r *dynRecv) take(b cdc.Batch) {
	for _, c := range b.Changes {
		r.keys = append(r.keys, c.Key.(string))
	}
	if b.CaughtUp {
		r.caughtUp++
	}
	r.last = b.Position
}

func indexOf(keys []string, k string) int {
	for i, x := range keys {
		if x == k {
			return i
		}
	}
	return -1
}

// TestDynamoStreamFakeSplits: a shard splits in two and one child splits again, with records in
// every shard before Run starts, and a split while it runs. Every record is delivered once, each
// shard's in order, every parent's before any of its children's; no CaughtUp batch comes before
// everything is read; a resume from the last position reads none of the closed shards again.
// DescribeStream answers two shards a page.
func TestDynamoStreamFakeSplits(t *testing.T) {
	f := newFakeStreams("t")
	src := dynSource(t, f, fakeStore(t), func(c *cdc.DynamoStreamConfig) { c.Limit = 2 })
	pos, err := src.Start(context.Background())
	require.NoError(t, err)

	lineage := map[string]string{} // key → the key that must come before it (its parent's last)
	put := func(shard, k string) { f.put(shard, k, types.OperationTypeInsert) }
	for i := range 5 {
		put("shard-0000", fmt.Sprintf("a%d", i))
	}
	f.split("shard-0000", "shard-0001", "shard-0002")
	for i := range 3 {
		put("shard-0001", fmt.Sprintf("b%d", i))
		put("shard-0002", fmt.Sprintf("c%d", i))
		lineage[fmt.Sprintf("b%d", i)], lineage[fmt.Sprintf("c%d", i)] = "a4", "a4"
	}
	f.split("shard-0001", "shard-0003")
	for i := range 2 {
		put("shard-0003", fmt.Sprintf("d%d", i))
		lineage[fmt.Sprintf("d%d", i)] = "b2"
	}
	split := false
	var r dynRecv
	require.NoError(t, dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool {
		r.take(b)
		if len(r.keys) < 13 {
			assert.False(t, b.CaughtUp, "caught up after %v", r.keys)
		}
		if len(r.keys) == 13 && !split { // split while running
			f.split("shard-0002", "shard-0004")
			put("shard-0004", "e0")
			lineage["e0"] = "c2"
			split = true
		}
		return len(r.keys) < 14
	}))
	require.Len(t, r.keys, 14)
	for _, k := range r.keys {
		assert.Equal(t, 1, countOf(r.keys, k), "%s delivered once", k)
		if before, ok := lineage[k]; ok {
			assert.Less(t, indexOf(r.keys, before), indexOf(r.keys, k), "%s (parent) before %s (child): %v", before, k, r.keys)
		}
	}
	for _, seq := range [][]string{{"a0", "a1", "a2", "a3", "a4"}, {"b0", "b1", "b2"}, {"c0", "c1", "c2"}, {"d0", "d1"}} {
		for i := 1; i < len(seq); i++ {
			assert.Less(t, indexOf(r.keys, seq[i-1]), indexOf(r.keys, seq[i]), "shard order")
		}
	}

	put("shard-0003", "d2")
	var again dynRecv
	require.NoError(t, dynTail(t, src, r.last, time.Minute, func(b cdc.Batch) bool {
		again.take(b)
		return len(again.keys) == 0
	}))
	assert.Equal(t, []string{"d2"}, again.keys, "closed shards are not read again")
	assert.Greater(t, f.count("DescribeStream"), 2, "paged")
}

func countOf(keys []string, k string) int {
	n := 0
	for _, x := range keys {
		if x == k {
			n++
		}
	}
	return n
}

// TestDynamoStreamFakeIdleCheckpoints: an idle source sends CaughtUp batches again and again,
// each with a later At and a fresher position, so a saved checkpoint does not age on an idle
// table; a write between them is delivered.
func TestDynamoStreamFakeIdleCheckpoints(t *testing.T) {
	f := newFakeStreams("t")
	src := dynSource(t, f, fakeStore(t), func(c *cdc.DynamoStreamConfig) { c.IdleCheckpoint = 20 * time.Millisecond })
	pos, err := src.Start(context.Background())
	require.NoError(t, err)
	var ups []cdc.Batch
	var r dynRecv
	require.NoError(t, dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool {
		r.take(b)
		if b.CaughtUp {
			assert.Empty(t, b.Changes)
			ups = append(ups, b)
			if len(ups) == 2 {
				f.put("shard-0000", "k0", types.OperationTypeInsert)
			}
		}
		return len(ups) < 4
	}))
	assert.Equal(t, []string{"k0"}, r.keys)
	for i := 1; i < len(ups); i++ {
		assert.True(t, ups[i].At.After(ups[i-1].At), "At moves on")
		assert.NotEqual(t, ups[i-1].Position, ups[i].Position, "the position moves on")
	}
}

// TestDynamoStreamFakeStart: Start marks a closed shard done and reads its open child to the
// end; Run then delivers only what comes after.
func TestDynamoStreamFakeStart(t *testing.T) {
	f := newFakeStreams("t")
	f.put("shard-0000", "old0", types.OperationTypeInsert)
	f.split("shard-0000", "shard-0001", "shard-0002")
	for i := range 5 {
		f.put("shard-0001", fmt.Sprintf("old%d", i+1), types.OperationTypeInsert)
	}
	src := dynSource(t, f, fakeStore(t), func(c *cdc.DynamoStreamConfig) { c.Limit = 2 })
	pos, err := src.Start(context.Background())
	require.NoError(t, err)
	f.put("shard-0001", "new0", types.OperationTypeModify)
	f.put("shard-0002", "new1", types.OperationTypeRemove)
	var r dynRecv
	require.NoError(t, dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool {
		r.take(b)
		return len(r.keys) < 2
	}))
	assert.ElementsMatch(t, []string{"new0", "new1"}, r.keys)
}

// TestDynamoStreamFakeExpiredIterators: iterators that expire mid-stream are acquired again
// after the checkpoint: nothing is lost or repeated. Iterators that expire every time end Run
// with an error after a few tries.
func TestDynamoStreamFakeExpiredIterators(t *testing.T) {
	f := newFakeStreams("t")
	src := dynSource(t, f, fakeStore(t), func(c *cdc.DynamoStreamConfig) { c.Limit = 3 })
	pos, err := src.Start(context.Background())
	require.NoError(t, err)
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("k%02d", i)
		f.put("shard-0000", k, types.OperationTypeInsert)
		want = append(want, k)
	}
	iters := f.count("GetShardIterator")
	var r dynRecv
	batches := 0
	require.NoError(t, dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool {
		r.take(b)
		if batches++; batches == 1 {
			f.expireAll()
			for i := 10; i < 15; i++ {
				f.put("shard-0000", fmt.Sprintf("k%02d", i), types.OperationTypeInsert)
			}
		}
		return len(r.keys) < 15
	}))
	for i := 10; i < 15; i++ {
		want = append(want, fmt.Sprintf("k%02d", i))
	}
	assert.Equal(t, want, r.keys)
	assert.Greater(t, f.count("GetShardIterator"), iters+1, "a new iterator after the expiry")

	f.getRecordsHook = func(string) { f.expireAll() }
	err = dynTail(t, src, r.last, time.Minute, func(cdc.Batch) bool { return true })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "expired in a row")
	assert.False(t, errors.Is(err, cdc.ErrHistoryLost))
}

// TestDynamoStreamFakeHistoryLost: every way a checkpoint can outlive its records ends Run with
// ErrHistoryLost, naming what was lost and the recovery, and does so again on a second Run.
func TestDynamoStreamFakeHistoryLost(t *testing.T) {
	cases := []struct {
		name string
		// lose acts on the fake after the checkpoint was taken (2 of 6 records delivered).
		lose func(f *fakeStreams)
		now  func() time.Time // the second Run's clock
		want string
		// first is what the first Run after the loss says, when it differs from the next ones.
		first string
	}{
		{name: "trimmed after the checkpoint", lose: func(f *fakeStreams) { f.trim("shard-0000", 4) }, want: "trimmed"},
		{name: "trimmed while reading", lose: func(f *fakeStreams) {
			f.getRecordsHook = func(id string) { f.trim(id, 6) }
		}, want: "were trimmed", first: "trimmed while being read"},
		{name: "shard gone", lose: func(f *fakeStreams) { f.drop("shard-0000") }, want: "no longer in the stream"},
		{name: "shard gone while reading", lose: func(f *fakeStreams) {
			f.getRecordsHook = func(id string) { f.drop(id) }
		}, want: "no longer in the stream"},
		{name: "checkpoint older than the retention", lose: func(*fakeStreams) {},
			now: func() time.Time { return time.Now().Add(25 * time.Hour) }, want: "longer than the stream keeps them"},
		{name: "stream replaced", lose: func(f *fakeStreams) {
			f.mu.Lock()
			f.arn += "-new"
			f.mu.Unlock()
		}, want: "the table's stream is now"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStreams("t")
			src := dynSource(t, f, fakeStore(t), func(c *cdc.DynamoStreamConfig) { c.Limit = 2 })
			pos, err := src.Start(context.Background())
			require.NoError(t, err)
			for i := range 6 {
				f.put("shard-0000", fmt.Sprintf("k%d", i), types.OperationTypeInsert)
			}
			var r dynRecv
			require.NoError(t, dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool { r.take(b); return len(r.keys) < 2 }))
			require.Equal(t, []string{"k0", "k1"}, r.keys)

			tc.lose(f)
			again := src
			if tc.now != nil {
				again = dynSource(t, f, fakeStore(t), func(c *cdc.DynamoStreamConfig) { c.Limit = 2; c.Now = tc.now })
			}
			for i := range 2 {
				var late dynRecv
				err := dynTail(t, again, r.last, time.Minute, func(b cdc.Batch) bool { late.take(b); return true })
				require.ErrorIs(t, err, cdc.ErrHistoryLost)
				if i == 0 && tc.first != "" {
					assert.Contains(t, err.Error(), tc.first)
				} else {
					assert.Contains(t, err.Error(), tc.want)
				}
				assert.Contains(t, err.Error(), "recovery: take a fresh position (Start) and copy the table again")
				assert.Empty(t, late.keys, "nothing delivered past a gap")
			}
		})
	}
}

// TestDynamoStreamFakeInvalidated: a deleted stream ends Run with ErrInvalidated; a disabled
// one once the records written before it was disabled are delivered.
func TestDynamoStreamFakeInvalidated(t *testing.T) {
	t.Run("deleted", func(t *testing.T) {
		f := newFakeStreams("t")
		src := dynSource(t, f, fakeStore(t), nil)
		pos, err := src.Start(context.Background())
		require.NoError(t, err)
		f.setStatus(types.StreamStatusDisabled, true)
		f.mu.Lock()
		f.deleted = true
		f.mu.Unlock()
		// checkStream finds no stream for the table: Start-like error; with the ARN given, the
		// stream itself is reported gone.
		srcARN := dynSource(t, f, fakeStore(t), func(c *cdc.DynamoStreamConfig) { c.StreamARN = f.arn })
		err = dynTail(t, srcARN, pos, time.Minute, func(cdc.Batch) bool { return true })
		require.ErrorIs(t, err, cdc.ErrInvalidated)
		assert.Contains(t, err.Error(), "no longer exists")
		err = dynTail(t, src, pos, time.Minute, func(cdc.Batch) bool { return true })
		require.ErrorIs(t, err, cdc.ErrNoStream)
		assert.Contains(t, err.Error(), "table t: the table has no stream enabled: enable one")
		assert.Contains(t, err.Error(), "aws dynamodb update-table --table-name t --stream-specification", "the command that enables it")
	})
	t.Run("disabled", func(t *testing.T) {
		f := newFakeStreams("t")
		src := dynSource(t, f, fakeStore(t), nil)
		pos, err := src.Start(context.Background())
		require.NoError(t, err)
		f.put("shard-0000", "k0", types.OperationTypeInsert)
		f.put("shard-0000", "k1", types.OperationTypeRemove)
		f.setStatus(types.StreamStatusDisabled, false)
		var r dynRecv
		err = dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool { r.take(b); return true })
		require.ErrorIs(t, err, cdc.ErrInvalidated)
		assert.Contains(t, err.Error(), "disabled")
		assert.Equal(t, []string{"k0", "k1"}, r.keys)
	})
}

// TestDynamoStreamFakeBadRecords: a record of an unknown event name, or without the table's
// key attribute, ends Run with ErrDynamoRecord naming it; the records before it (in the same
// GetRecords answer) are delivered, it is not, and no checkpoint passes it.
func TestDynamoStreamFakeBadRecords(t *testing.T) {
	cases := []struct {
		name string
		keys map[string]types.AttributeValue
		op   types.OperationType
		want string
	}{
		{"unknown event", map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "x"}}, "UPSERT", `event name "UPSERT"`},
		{"no key attribute", map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "x"}}, types.OperationTypeInsert, `no attribute "pk"`},
		{"key of a map type", map[string]types.AttributeValue{"pk": &types.AttributeValueMemberBOOL{Value: true}}, types.OperationTypeInsert, `key attribute "pk"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStreams("t")
			src := dynSource(t, f, fakeStore(t), nil)
			pos, err := src.Start(context.Background())
			require.NoError(t, err)
			f.put("shard-0000", "good", types.OperationTypeInsert)
			f.mu.Lock()
			bad := f.putLocked("shard-0000", tc.op, tc.keys)
			f.mu.Unlock()
			f.put("shard-0000", "after", types.OperationTypeInsert)
			var r dynRecv
			err = dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool { r.take(b); return true })
			require.ErrorIs(t, err, cdc.ErrDynamoRecord)
			require.ErrorIs(t, err, cdc.ErrBadEvent, "a tailer stops the path in bad_event")
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "record "+bad)
			assert.Equal(t, []string{"good"}, r.keys)
			// The last position resumes before the bad record: the same error again.
			err = dynTail(t, src, r.last, time.Minute, func(b cdc.Batch) bool { return true })
			require.ErrorIs(t, err, cdc.ErrDynamoRecord)
		})
	}
}

// TestDynamoStreamBadPosition: a position that is not this source's, or that a newer tandem
// wrote, is refused with a clear error before any read.
func TestDynamoStreamBadPosition(t *testing.T) {
	doc := func(d bson.D) cdc.Position {
		b, err := bson.Marshal(d)
		require.NoError(t, err)
		return b
	}
	cases := []struct {
		name string
		pos  cdc.Position
		want string
	}{
		{"not BSON", cdc.Position{1, 2, 3}, "not a BSON document"},
		{"another source", doc(bson.D{{Key: "_data", Value: "8263"}}), `source is ""`},
		{"newer tandem", doc(bson.D{{Key: "source", Value: "dynamodb-streams"}, {Key: "v", Value: 2}, {Key: "stream", Value: "arn"}}), "written by a newer tandem"},
		{"no stream", doc(bson.D{{Key: "source", Value: "dynamodb-streams"}, {Key: "v", Value: 1}}), "no stream ARN"},
		{"bad sequence number", doc(bson.D{{Key: "source", Value: "dynamodb-streams"}, {Key: "v", Value: 1}, {Key: "stream", Value: "arn"},
			{Key: "shards", Value: bson.A{bson.D{{Key: "id", Value: "s1"}, {Key: "seq", Value: "12x"}}}}}), `shard s1: sequence number "12x"`},
		{"shard twice", doc(bson.D{{Key: "source", Value: "dynamodb-streams"}, {Key: "v", Value: 1}, {Key: "stream", Value: "arn"},
			{Key: "shards", Value: bson.A{bson.D{{Key: "id", Value: "s1"}}, bson.D{{Key: "id", Value: "s1"}}}}}), "shard s1 appears twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeStreams("t")
			src := dynSource(t, f, fakeStore(t), nil)
			err := src.Run(context.Background(), tc.pos, make(chan cdc.Batch))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Zero(t, f.count("GetRecords"))
		})
	}
}

// TestDynamoStreamConfig: the required fields and the Limit bound.
func TestDynamoStreamConfig(t *testing.T) {
	_, err := cdc.NewDynamoStream(cdc.DynamoStreamConfig{Table: fakeStore(t)})
	assert.ErrorContains(t, err, "Streams is required")
	_, err = cdc.NewDynamoStream(cdc.DynamoStreamConfig{Streams: newFakeStreams("t")})
	assert.ErrorContains(t, err, "Table is required")
	_, err = cdc.NewDynamoStream(cdc.DynamoStreamConfig{Streams: newFakeStreams("t"), Table: fakeStore(t), Limit: 1001})
	assert.ErrorContains(t, err, "Limit 1001")
}
