package adapters

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestMongoMixedKeyTypes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := newMongoStore(t)
	oid := bson.NewObjectID()
	// In MongoDB's order: numbers, strings, ObjectIDs, booleans, dates.
	keys := []Key{int32(1), int64(2), 3.5, "a", "b", oid, true, bson.DateTime(5)}
	for _, k := range keys {
		require.NoError(t, s.Upsert(ctx, bson.D{{Key: "_id", Value: k}}))
	}
	ps, err := s.Partitions(ctx, 4)
	require.NoError(t, err)
	assert.Equal(t, []Partition{{}}, ps, "mixed key types give one partition")

	scanKeys := func(after Key) []string {
		var got []string
		require.NoError(t, s.Scan(ctx, Partition{}, ScanOptions{After: after, Batch: 3}, func(ds []bson.D) error {
			for _, d := range ds {
				got = append(got, KeyString(d[0].Value))
			}
			return nil
		}))
		return got
	}
	want := make([]string, len(keys))
	for i, k := range keys {
		want[i] = KeyString(k)
	}
	assert.Equal(t, want, scanKeys(nil))
	for i, k := range keys {
		assert.Equal(t, want[i+1:], append([]string{}, scanKeys(k)...), "resuming after %s reads the keys of later types too", KeyString(k))
	}
}

func TestMongoKeyField(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := newMongoStore(t, MongoKeyField("k"))
	_, err := s.Collection().Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys: bson.D{{Key: "k", Value: 1}}, Options: options.Index().SetUnique(true),
	})
	require.NoError(t, err)

	for i := range 20 {
		require.NoError(t, s.Upsert(ctx, bson.D{{Key: "k", Value: key(i)}, {Key: "v", Value: int32(i)}}))
	}
	got, err := s.Get(ctx, key(3))
	require.NoError(t, err)
	assert.Equal(t, bson.D{{Key: "k", Value: key(3)}, {Key: "v", Value: int32(3)}}, got, "_id is hidden")
	n, err := s.Normalize(bson.D{{Key: "_id", Value: "x"}, {Key: "k", Value: key(3)}, {Key: "v", Value: int32(3)}})
	require.NoError(t, err)
	assert.Equal(t, got, n, "Normalize drops _id")

	// Replacing keeps the document (and its _id): still 20.
	require.NoError(t, s.Upsert(ctx, bson.D{{Key: "k", Value: key(3)}, {Key: "v", Value: "new"}}))
	count, err := s.Collection().CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(20), count)

	m, err := s.BatchGet(ctx, []Key{key(1), key(2), key(99)})
	require.NoError(t, err)
	assert.Len(t, m, 2)

	ps, err := s.Partitions(ctx, 3)
	require.NoError(t, err)
	assert.Len(t, ps, 3)
	assert.IsType(t, "", ps[0].Max, "split on k, not _id")
	all := scanAll(t, s, 3)
	assert.Len(t, all, 20)
	assert.Equal(t, []string{"k", "v"}, []string{all[0][0].Key, all[0][1].Key})

	require.NoError(t, s.BulkWrite(ctx, []WriteOp{{Key: key(1)}, {Doc: bson.D{{Key: "k", Value: key(50)}}}}))
	_, err = s.Get(ctx, key(1))
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.Get(ctx, key(50))
	assert.NoError(t, err)
}

// TestMongoChunks covers chunk boundaries cheaply, and the cap that keeps FerretDB from
// deadlocking on an update command of many replaces of existing documents.
func TestMongoChunks(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := newMongoStore(t, MongoGetChunk(3), MongoWriteChunk(4))
	kit := storeKit{keyField: "_id"}
	kit.seed(t, s, 10)
	ops := []WriteOp{}
	for i := range 10 {
		if i%3 == 0 {
			ops = append(ops, WriteOp{Key: key(i)})
		} else {
			ops = append(ops, WriteOp{Key: key(i), Doc: kit.doc(i, bson.E{Key: "v", Value: true})})
		}
	}
	require.NoError(t, s.BulkWrite(ctx, ops))
	keys := make([]Key, 12)
	for i := range keys {
		keys[i] = key(i)
	}
	m, err := s.BatchGet(ctx, keys)
	require.NoError(t, err)
	assert.Len(t, m, 6)
	for _, d := range m {
		assert.Equal(t, true, keyOrNil(d, "v"))
	}

	// Default chunks (1000): 150 replaces of existing documents in one BulkWrite. FerretDB would
	// hang on them as one update command.
	big := newMongoStore(t)
	kit.seed(t, big, 150)
	ops = ops[:0]
	for i := range 150 {
		ops = append(ops, WriteOp{Key: key(i), Doc: kit.doc(i, bson.E{Key: "v", Value: int32(2)})})
	}
	ctx2, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	require.NoError(t, big.BulkWrite(ctx2, ops))
	assert.True(t, big.isFerretDB(ctx), "the embedded server is recognised as FerretDB")
}

func TestMongoNormalizeGoTypes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := newMongoStore(t)
	when := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	doc := bson.D{
		{Key: "n", Value: 5},
		{Key: "big", Value: 1 << 40},
		{Key: "b", Value: []byte{1, 2}},
		{Key: "t", Value: when},
		{Key: "m", Value: bson.M{"a": int32(1)}},
		{Key: "l", Value: []any{"x"}},
		{Key: "_id", Value: "k"}, // MongoDB stores _id first
	}
	require.NoError(t, s.Upsert(ctx, doc))
	got, err := s.Get(ctx, "k")
	require.NoError(t, err)
	n, err := s.Normalize(doc)
	require.NoError(t, err)
	assertSameDoc(t, n, got)
	assert.Equal(t, bson.D{
		{Key: "_id", Value: "k"},
		{Key: "n", Value: int32(5)},
		{Key: "big", Value: int64(1 << 40)},
		{Key: "b", Value: bson.Binary{Data: []byte{1, 2}}},
		{Key: "t", Value: bson.NewDateTimeFromTime(when)},
		{Key: "m", Value: bson.D{{Key: "a", Value: int32(1)}}},
		{Key: "l", Value: bson.A{"x"}},
	}, n)
}

func TestMongoKeyOfNullIsMissing(t *testing.T) {
	s := newMongoStore(t)
	_, err := s.KeyOf(bson.D{{Key: "_id", Value: nil}})
	assert.ErrorIs(t, err, ErrKeyMissing)
}

func TestMongoSampledPartitionsFallBack(t *testing.T) {
	t.Parallel()
	s := newMongoStore(t, MongoSampledPartitions(10))
	storeKit{keyField: "_id"}.seed(t, s, 40)
	ps, err := s.Partitions(testCtx(t), 4)
	require.NoError(t, err, "FerretDB has no $sample: sorted skips instead")
	assert.Len(t, ps, 4)
	assert.Len(t, scanAll(t, s, 4), 40)
}

func TestMongoClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	mongoClient(t) // start the server
	own, err := mongo.Connect(options.Client().ApplyURI(ferret.URI()))
	require.NoError(t, err)
	coll := own.Database("adapters").Collection(fmt.Sprintf("close%d", time.Now().UnixNano()))

	notOwned := NewMongoStore(coll)
	require.NoError(t, notOwned.Close(ctx))
	_, err = notOwned.Get(ctx, "x")
	assert.ErrorIs(t, err, ErrNotFound, "the client still works")

	owned := NewMongoStore(coll, MongoOwnsClient())
	require.NoError(t, owned.Close(ctx))
	_, err = owned.Get(ctx, "x")
	assert.ErrorIs(t, err, mongo.ErrClientDisconnected)
}

// InsertNew inserts the documents whose keys are absent, in chunks, and returns the indexes of
// the others without touching the documents the store already holds.
func TestMongoInsertNew(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s := newMongoStore(t, MongoWriteChunk(3))
	kit := storeKit{keyField: "_id"}
	kit.seed(t, s, 4) // keys 0..3
	var ops []WriteOp
	for i := 2; i < 9; i++ {
		ops = append(ops, WriteOp{Key: key(i), Doc: kit.doc(i, bson.E{Key: "v", Value: "new"})})
	}
	present, err := s.InsertNew(ctx, ops)
	require.NoError(t, err)
	assert.Equal(t, []int{0, 1}, present, "keys 2 and 3 were there")
	for i := range 9 {
		d, err := s.Get(ctx, key(i))
		require.NoError(t, err)
		if i < 4 {
			assert.Nil(t, keyOrNil(d, "v"), "key %d kept as it was", i)
		} else {
			assert.Equal(t, "new", keyOrNil(d, "v"), "key %d inserted", i)
		}
	}
	_, err = s.InsertNew(ctx, []WriteOp{{Key: key(20)}})
	assert.ErrorIs(t, err, ErrUnsupportedValue, "a delete is no insert")

	// Keyed by a field without a unique index, it upserts: a key already there is replaced,
	// never inserted a second time.
	byK := newMongoStore(t, MongoKeyField("k"))
	kk := storeKit{keyField: "k"}
	kk.seed(t, byK, 2)
	present, err = byK.InsertNew(ctx, []WriteOp{{Key: key(1), Doc: kk.doc(1, bson.E{Key: "v", Value: "new"})}, {Key: key(5), Doc: kk.doc(5)}})
	require.NoError(t, err)
	assert.Empty(t, present)
	n, err := byK.Collection().CountDocuments(ctx, bson.D{{Key: "k", Value: key(1)}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "one document with key 1")
	d, err := byK.Get(ctx, key(1))
	require.NoError(t, err)
	assert.Equal(t, "new", keyOrNil(d, "v"))
}
