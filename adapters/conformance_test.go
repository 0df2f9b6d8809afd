package adapters

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// storeKit describes one Store implementation to the conformance suite.
type storeKit struct {
	// open returns a new, empty store over a collection or table of its own.
	open func(t *testing.T) Store
	// keyField is the document field that holds the key.
	keyField string
	// maxItem is the store's item size limit, in bytes of the store's own measure.
	maxItem int
	// bigItem is the size of a document that the store must accept (near maxItem where the
	// test server allows it).
	bigItem int
	// keyOrdered says whether Scan returns a partition in key order.
	keyOrdered bool
	// extra are fields of types that the store keeps beyond those every store keeps.
	extra []bson.E
	// skipOver1000 names why the bulk write of more than 1000 items is not run, if it is not.
	skipOver1000 string
}

func TestConformanceFerretDB(t *testing.T) {
	runConformance(t, storeKit{
		open:       func(t *testing.T) Store { return newMongoStore(t) },
		keyField:   "_id",
		maxItem:    MongoMaxDocumentSize,
		bigItem:    1 << 20, // a 16 MB document through FerretDB's SQLite is slow, not different
		keyOrdered: true,
		// FerretDB runs in this process, under -race too: 2200 writes take minutes. Chunking is
		// covered by TestMongoChunks with small chunks.
		skipOver1000: "too slow on embedded FerretDB under -race; see TestMongoChunks",
	})
}

// TestConformanceMongoDB runs the suite against a real MongoDB when TANDEM_MONGODB_URI names one
// (a replica set or standalone); FerretDB stands in for it otherwise.
func TestConformanceMongoDB(t *testing.T) {
	uri := os.Getenv("TANDEM_MONGODB_URI")
	if uri == "" {
		t.Skip("TANDEM_MONGODB_URI is not set: the Store suite ran against FerretDB only, not a real MongoDB")
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	runConformance(t, storeKit{
		open: func(t *testing.T) Store {
			coll := client.Database("tandem_adapters_test").Collection(fmt.Sprintf("c%d", time.Now().UnixNano()))
			t.Cleanup(func() { _ = coll.Drop(context.Background()) })
			return NewMongoStore(coll, MongoSampledPartitions(8))
		},
		keyField:   "_id",
		maxItem:    MongoMaxDocumentSize,
		bigItem:    MongoMaxDocumentSize - 1024,
		keyOrdered: true,
	})
}

func TestConformanceDynamoDB(t *testing.T) {
	motoServer(t) // skip or fail here, once, without moto
	runConformance(t, storeKit{
		open:     func(t *testing.T) Store { return newDynamoStore(t, dynamoTable()) },
		keyField: "pk",
		maxItem:  DynamoMaxItemSize,
		// moto refuses items over 405,000 bytes by its own count, below DynamoDB's 409,600.
		bigItem:    400_000,
		keyOrdered: false,
		// FerretDB refuses infinities and NaN, and lacks decimal128.
		extra: []bson.E{
			{Key: "ninf", Value: math.Inf(-1)},
			{Key: "nan", Value: math.NaN()},
			{Key: "negzero", Value: math.Copysign(0, -1)},
			{Key: "tiny", Value: 5e-324},
			{Key: "dec", Value: mustDecimal("1234.5678901234567890123456789")},
			// A user map that looks like a tagged value.
			{Key: "meta", Value: bson.D{{Key: "$oid", Value: "not an id"}, {Key: "$$", Value: int32(1)}}},
		},
	})
}

func runConformance(t *testing.T, kit storeKit) {
	tests := []struct {
		name string
		run  func(t *testing.T, kit storeKit, s Store)
	}{
		{"GetMissing", testGetMissing},
		{"UpsertReplaceGet", testUpsertReplaceGet},
		{"UpsertWithoutKey", testUpsertWithoutKey},
		{"BatchGet", testBatchGet},
		{"BatchGetOverOneCall", testBatchGetMany},
		{"DeleteIdempotent", testDeleteIdempotent},
		{"BulkWriteMixed", testBulkWriteMixed},
		{"BulkWriteOver1000", testBulkWriteLarge},
		{"BulkWriteChecksFirst", testBulkWriteChecksFirst},
		{"ScanPartitions", testScanPartitions},
		{"ScanResume", testScanResume},
		{"ScanStopsOnError", testScanStopsOnError},
		{"EstimateCount", testEstimateCount},
		{"KeyOf", testKeyOf},
		{"NormalizeMatchesGet", testNormalizeMatchesGet},
		{"TooLarge", testTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, kit, kit.open(t))
		})
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// doc is the i-th test document: its key, then fields.
func (kit storeKit) doc(i int, fields ...bson.E) bson.D {
	return append(bson.D{{Key: kit.keyField, Value: key(i)}, {Key: "n", Value: int32(i)}}, fields...)
}

func (kit storeKit) seed(t *testing.T, s Store, n int) {
	t.Helper()
	ops := make([]WriteOp, n)
	for i, j := range rand.Perm(n) { // not in key order
		ops[i] = WriteOp{Key: key(j), Doc: kit.doc(j)}
	}
	require.NoError(t, s.BulkWrite(testCtx(t), ops))
}

// extJSON renders a document with its types (canonical Extended JSON), for readable diffs.
func extJSON(t *testing.T, d bson.D) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(d, true, false)
	require.NoError(t, err)
	return string(b)
}

func assertSameDoc(t *testing.T, want, got bson.D, msgAndArgs ...any) {
	t.Helper()
	assert.Equal(t, extJSON(t, want), extJSON(t, got), msgAndArgs...)
}

func normalized(t *testing.T, s Store, d bson.D) bson.D {
	t.Helper()
	n, err := s.Normalize(d)
	require.NoError(t, err)
	return n
}

// richDoc holds a value of every type that both stores keep, fields deliberately unsorted.
func (kit storeKit) richDoc(i int) bson.D {
	oid, _ := bson.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	return append(kit.doc(i,
		bson.E{Key: "str", Value: "héllo"},
		bson.E{Key: "i64", Value: int64(1) << 40},
		bson.E{Key: "small64", Value: int64(3)},
		bson.E{Key: "f", Value: 2.5},
		bson.E{Key: "fint", Value: 4.0},
		bson.E{Key: "big", Value: 1e300},
		bson.E{Key: "yes", Value: true},
		bson.E{Key: "nothing", Value: nil},
		bson.E{Key: "oid", Value: oid},
		bson.E{Key: "at", Value: bson.DateTime(1700000000123)},
		bson.E{Key: "bin", Value: bson.Binary{Subtype: 0, Data: []byte{0, 1, 2}}},
		bson.E{Key: "uuid", Value: bson.Binary{Subtype: 4, Data: []byte("0123456789abcdef")}},
		bson.E{Key: "arr", Value: bson.A{"x", int32(2), bson.D{{Key: "z", Value: int32(1)}, {Key: "a", Value: bson.A{}}}}},
		bson.E{Key: "obj", Value: bson.D{{Key: "b", Value: "1"}, {Key: "a", Value: bson.D{}}}},
		bson.E{Key: "empty", Value: ""},
	), kit.extra...)
}

func testGetMissing(t *testing.T, kit storeKit, s Store) {
	_, err := s.Get(testCtx(t), key(1))
	require.ErrorIs(t, err, ErrNotFound)
	assert.Contains(t, err.Error(), KeyString(key(1)))
}

func testUpsertReplaceGet(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	first := kit.richDoc(1)
	require.NoError(t, s.Upsert(ctx, first))
	got, err := s.Get(ctx, key(1))
	require.NoError(t, err)
	assertSameDoc(t, normalized(t, s, first), got)

	// A replacement drops the fields it does not have.
	second := bson.D{{Key: "only", Value: "field"}, {Key: kit.keyField, Value: key(1)}}
	require.NoError(t, s.Upsert(ctx, second))
	got, err = s.Get(ctx, key(1))
	require.NoError(t, err)
	assertSameDoc(t, normalized(t, s, second), got)
}

func testUpsertWithoutKey(t *testing.T, kit storeKit, s Store) {
	err := s.Upsert(testCtx(t), bson.D{{Key: "x", Value: int32(1)}})
	assert.ErrorIs(t, err, ErrKeyMissing)
}

func testBatchGet(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	kit.seed(t, s, 10)
	keys := []Key{key(100), key(3)}
	for i := range 10 {
		keys = append(keys, key(i))
	}
	keys = append(keys, key(101), key(3)) // a missing key and a repeated one
	got, err := s.BatchGet(ctx, keys)
	require.NoError(t, err)
	require.Len(t, got, 10)
	for i := range 10 {
		d, ok := got[KeyString(key(i))]
		if assert.True(t, ok, "key %d", i) {
			assertSameDoc(t, normalized(t, s, kit.doc(i)), d)
		}
	}
	empty, err := s.BatchGet(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, empty)
}

// testBatchGetMany asks for more keys than DynamoDB takes in one BatchGetItem.
func testBatchGetMany(t *testing.T, kit storeKit, s Store) {
	kit.seed(t, s, 130)
	keys := make([]Key, 0, 160)
	for i := range 160 {
		keys = append(keys, key(i))
	}
	got, err := s.BatchGet(testCtx(t), keys)
	require.NoError(t, err)
	assert.Len(t, got, 130)
	for i := range 130 {
		assert.Contains(t, got, KeyString(key(i)))
	}
}

func testDeleteIdempotent(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	require.NoError(t, s.Upsert(ctx, kit.doc(1)))
	require.NoError(t, s.Delete(ctx, key(1)))
	_, err := s.Get(ctx, key(1))
	assert.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.Delete(ctx, key(1)), "deleting again")
	require.NoError(t, s.Delete(ctx, key(2)), "deleting a key that never existed")
}

// scanAll reads every document of the store through Partitions(n).
func scanAll(t *testing.T, s Store, n int) []bson.D {
	t.Helper()
	ctx := testCtx(t)
	ps, err := s.Partitions(ctx, n)
	require.NoError(t, err)
	var all []bson.D
	for _, p := range ps {
		require.NoError(t, s.Scan(ctx, p, ScanOptions{}, func(ds []bson.D) error {
			all = append(all, ds...)
			return nil
		}))
	}
	return all
}

func keysOf(t *testing.T, s Store, docs []bson.D) []string {
	t.Helper()
	ks := make([]string, len(docs))
	for i, d := range docs {
		k, err := s.KeyOf(d)
		require.NoError(t, err)
		ks[i] = k.(string)
	}
	return ks
}

func testBulkWriteMixed(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	kit.seed(t, s, 60)
	var ops []WriteOp
	for i := range 30 { // replace
		ops = append(ops, WriteOp{Key: key(i), Doc: kit.doc(i, bson.E{Key: "v", Value: "new"})})
	}
	for i := 30; i < 60; i++ { // delete
		ops = append(ops, WriteOp{Key: key(i)})
	}
	for i := 60; i < 90; i++ { // insert, with no Key: the document's is used
		ops = append(ops, WriteOp{Doc: kit.doc(i)})
	}
	ops = append(ops, WriteOp{Key: key(500)}) // delete a missing key
	rand.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	require.NoError(t, s.BulkWrite(ctx, ops))

	all := scanAll(t, s, 1)
	byKey := map[string]bson.D{}
	for _, d := range all {
		byKey[keyOrNil(d, kit.keyField).(string)] = d
	}
	assert.Len(t, byKey, 60)
	for i := range 90 {
		d, ok := byKey[key(i)]
		switch {
		case i < 30:
			if assert.True(t, ok, "replaced %d", i) {
				assertSameDoc(t, normalized(t, s, kit.doc(i, bson.E{Key: "v", Value: "new"})), d)
			}
		case i < 60:
			assert.False(t, ok, "deleted %d", i)
		default:
			assert.True(t, ok, "inserted %d", i)
		}
	}
}

func testBulkWriteLarge(t *testing.T, kit storeKit, s Store) {
	if kit.skipOver1000 != "" {
		t.Skip(kit.skipOver1000)
	}
	if testing.Short() {
		t.Skip("-short")
	}
	const n = 1100
	kit.seed(t, s, n)
	ops := make([]WriteOp, 0, n)
	for i := range n {
		if i%2 == 0 {
			ops = append(ops, WriteOp{Key: key(i)})
		} else {
			ops = append(ops, WriteOp{Key: key(i), Doc: kit.doc(i, bson.E{Key: "v", Value: int32(2)})})
		}
	}
	require.NoError(t, s.BulkWrite(testCtx(t), ops))
	all := scanAll(t, s, 1)
	require.Len(t, all, n/2)
	for _, d := range all {
		assert.Equal(t, int32(2), keyOrNil(d, "v"), "replaced document %v", d)
	}
}

func testBulkWriteChecksFirst(t *testing.T, kit storeKit, s Store) {
	ops := []WriteOp{
		{Key: key(1), Doc: kit.doc(1)},
		{Doc: bson.D{{Key: "nokey", Value: true}}},
	}
	require.ErrorIs(t, s.BulkWrite(testCtx(t), ops), ErrKeyMissing)
	assert.Empty(t, scanAll(t, s, 1), "nothing is written when an op is invalid")

	ops = []WriteOp{{Key: key(2), Doc: kit.doc(1)}}
	assert.Error(t, s.BulkWrite(testCtx(t), ops), "an op whose key differs from its document's")
}

func testScanPartitions(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	const n = 200
	kit.seed(t, s, n)
	ps, err := s.Partitions(ctx, 4)
	require.NoError(t, err)
	require.NotEmpty(t, ps)
	require.LessOrEqual(t, len(ps), 4)
	seen := map[string]int{}
	var prevLast string
	for pi, p := range ps {
		var keys []string
		require.NoError(t, s.Scan(ctx, p, ScanOptions{Batch: 7}, func(ds []bson.D) error {
			assert.NotEmpty(t, ds)
			assert.LessOrEqual(t, len(ds), 7)
			keys = append(keys, keysOf(t, s, ds)...)
			return nil
		}))
		assert.NotEmpty(t, keys, "partition %d of %d is empty: %+v", pi, len(ps), p)
		for _, k := range keys {
			seen[k]++
		}
		if kit.keyOrdered && len(keys) > 0 {
			assert.True(t, slices.IsSorted(keys), "partition %d in key order", pi)
			assert.Less(t, prevLast, keys[0], "partitions in key order")
			prevLast = keys[len(keys)-1]
		}
	}
	assert.Len(t, seen, n)
	for k, c := range seen {
		assert.Equal(t, 1, c, "key %s scanned %d times", k, c)
	}
}

var errStop = errors.New("stop here")

func testScanResume(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	kit.seed(t, s, 120)
	ps, err := s.Partitions(ctx, 4)
	require.NoError(t, err)
	total := 0
	for pi, p := range ps {
		var full []string
		require.NoError(t, s.Scan(ctx, p, ScanOptions{Batch: 50}, func(ds []bson.D) error {
			full = append(full, keysOf(t, s, ds)...)
			return nil
		}))
		total += len(full)
		if len(full) < 2 {
			continue
		}
		// Stop after the first batch, as a crash after a checkpoint would.
		var first []string
		err := s.Scan(ctx, p, ScanOptions{Batch: 5}, func(ds []bson.D) error {
			first = append(first, keysOf(t, s, ds)...)
			return errStop
		})
		require.ErrorIs(t, err, errStop, "Scan returns fn's error")
		require.NotEmpty(t, first)
		var rest []string
		require.NoError(t, s.Scan(ctx, p, ScanOptions{Batch: 5, After: first[len(first)-1]}, func(ds []bson.D) error {
			rest = append(rest, keysOf(t, s, ds)...)
			return nil
		}))
		resumed := append(slices.Clone(first), rest...)
		if kit.keyOrdered {
			assert.Equal(t, full, resumed, "partition %d", pi)
		} else {
			assert.ElementsMatch(t, full, resumed, "partition %d", pi)
		}

		// Resuming after the partition's last key reads nothing.
		var none []bson.D
		require.NoError(t, s.Scan(ctx, p, ScanOptions{After: full[len(full)-1]}, func(ds []bson.D) error {
			none = append(none, ds...)
			return nil
		}))
		assert.Empty(t, none, "after the last key of partition %d", pi)
	}
	assert.Equal(t, 120, total)
}

func testScanStopsOnError(t *testing.T, kit storeKit, s Store) {
	kit.seed(t, s, 30)
	calls := 0
	err := s.Scan(testCtx(t), Partition{}, ScanOptions{Batch: 4}, func([]bson.D) error {
		calls++
		return errStop
	})
	assert.ErrorIs(t, err, errStop)
	assert.Equal(t, 1, calls)
}

func testEstimateCount(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	n, err := s.EstimateCount(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
	kit.seed(t, s, 37)
	n, err = s.EstimateCount(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(37), n, "the test servers count exactly")
}

func testKeyOf(t *testing.T, kit storeKit, s Store) {
	k, err := s.KeyOf(bson.D{{Key: "x", Value: int32(1)}, {Key: kit.keyField, Value: "abc"}})
	require.NoError(t, err)
	assert.Equal(t, "abc", k)
	_, err = s.KeyOf(bson.D{{Key: "x", Value: int32(1)}})
	assert.ErrorIs(t, err, ErrKeyMissing)
}

func testNormalizeMatchesGet(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	d := kit.richDoc(7)
	// The key last, as a transform might leave it.
	d = append(d[1:], d[0])
	require.NoError(t, s.Upsert(ctx, d))
	got, err := s.Get(ctx, key(7))
	require.NoError(t, err)
	n := normalized(t, s, d)
	assertSameDoc(t, n, got)
	assertSameDoc(t, n, normalized(t, s, n), "Normalize is idempotent")

	all := scanAll(t, s, 1)
	require.Len(t, all, 1)
	assertSameDoc(t, n, all[0], "Scan returns what Get does")
	m, err := s.BatchGet(ctx, []Key{key(7)})
	require.NoError(t, err)
	assertSameDoc(t, n, m[KeyString(key(7))], "BatchGet returns what Get does")
}

func testTooLarge(t *testing.T, kit storeKit, s Store) {
	ctx := testCtx(t)
	huge := kit.doc(1, bson.E{Key: "blob", Value: strings.Repeat("x", kit.maxItem)})
	err := s.Upsert(ctx, huge)
	require.ErrorIs(t, err, ErrItemTooLarge)
	assert.Contains(t, err.Error(), KeyString(key(1)))
	err = s.BulkWrite(ctx, []WriteOp{{Key: key(2), Doc: kit.doc(2)}, {Key: key(1), Doc: huge}})
	require.ErrorIs(t, err, ErrItemTooLarge)
	assert.Empty(t, scanAll(t, s, 1), "nothing is written")

	big := kit.doc(3, bson.E{Key: "blob", Value: strings.Repeat("y", kit.bigItem-100)})
	require.NoError(t, s.Upsert(ctx, big))
	got, err := s.Get(ctx, key(3))
	require.NoError(t, err)
	assert.Equal(t, kit.bigItem-100, len(keyOrNil(got, "blob").(string)))
}

func mustDecimal(s string) bson.Decimal128 {
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		panic(err)
	}
	return d
}
