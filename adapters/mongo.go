package adapters

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// MongoMaxDocumentSize is MongoDB's document size limit (maxBsonObjectSize), 16 MiB of BSON.
const MongoMaxDocumentSize = 16 * 1024 * 1024

// ferretDBWriteChunk caps BulkWrite's chunks on FerretDB. FerretDB v1.24 keeps one SQLite
// connection per update that matches a document until its update command ends, from a pool of
// 100 that the whole server shares: an update command with ~100 matching replaces deadlocks
// (internal/handler/msg_update.go, updateDocument). 25 leaves room for 3 more such commands.
const ferretDBWriteChunk = 25

// ferretDBPointReads is the most keys BatchGet reads one by one on FerretDB instead of with one
// $in query: FerretDB v1.24 runs $in as a scan of the whole collection (explain: filterPushdown
// false), ~40 ms at 800 documents against ~0.7 ms for a point read by _id.
const ferretDBPointReads = 32

// MongoStore is a Store over one MongoDB collection, keyed by one top-level field (default
// _id). Documents are stored as they are; Normalize only does what the server does on write.
type MongoStore struct {
	coll       *mongo.Collection
	ns         string
	keyField   string
	ownsClient bool
	writeChunk int
	getChunk   int
	samples    int

	serverMu sync.Mutex
	probed   bool // whether isFerretDB has asked the server
	ferretDB bool
}

type mongoConfig struct {
	keyField   string
	ownsClient bool
	writeChunk int
	getChunk   int
	samples    int
}

// MongoOption configures a MongoStore.
type MongoOption func(*mongoConfig)

// MongoKeyField keys the store by field instead of _id. The field should have a unique index
// (and one to sort by, for Scan and Partitions). MongoDB still gives every document an _id: the
// store leaves it to MongoDB and hides it (reads project it out, Normalize drops it).
// Default "_id".
func MongoKeyField(field string) MongoOption { return func(c *mongoConfig) { c.keyField = field } }

// MongoOwnsClient makes Close disconnect the collection's client. Default: Close does nothing,
// the caller owns the client.
func MongoOwnsClient() MongoOption { return func(c *mongoConfig) { c.ownsClient = true } }

// MongoWriteChunk sets how many writes one bulkWrite command of BulkWrite carries. Default 1000;
// on FerretDB (detected by buildInfo) at most 25, as larger update commands can deadlock it.
func MongoWriteChunk(n int) MongoOption { return func(c *mongoConfig) { c.writeChunk = n } }

// MongoGetChunk sets how many keys one $in query of BatchGet carries. Default 1000.
func MongoGetChunk(n int) MongoOption { return func(c *mongoConfig) { c.getChunk = n } }

// MongoSampledPartitions makes Partitions choose split points from perPartition·n keys drawn
// with $sample, one aggregation instead of n-1 sorted skips. Use it on MongoDB for large
// collections. A server without $sample (FerretDB v1 answers NotImplemented) gets sorted skips.
// Default 0: sorted skips, exact and O(n·count) on the server.
func MongoSampledPartitions(perPartition int) MongoOption {
	return func(c *mongoConfig) { c.samples = perPartition }
}

// NewMongoStore returns a store over coll.
func NewMongoStore(coll *mongo.Collection, opts ...MongoOption) *MongoStore {
	cfg := mongoConfig{keyField: "_id", writeChunk: 1000, getChunk: 1000}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.keyField == "" {
		cfg.keyField = "_id"
	}
	return &MongoStore{
		coll:       coll,
		ns:         coll.Database().Name() + "." + coll.Name(),
		keyField:   cfg.keyField,
		ownsClient: cfg.ownsClient,
		writeChunk: max(cfg.writeChunk, 1),
		getChunk:   max(cfg.getChunk, 1),
		samples:    cfg.samples,
	}
}

// Collection returns the collection the store reads and writes.
func (s *MongoStore) Collection() *mongo.Collection { return s.coll }

// KeyField is the field that holds the store's key ("_id" unless MongoKeyField).
func (s *MongoStore) KeyField() string { return s.keyField }

func (s *MongoStore) errf(op string, key Key, err error) error {
	if key == nil {
		return fmt.Errorf("mongodb %s: %s: %w", s.ns, op, err)
	}
	return fmt.Errorf("mongodb %s: %s %s: %w", s.ns, op, KeyString(key), err)
}

func (s *MongoStore) filter(key Key) bson.D { return bson.D{{Key: s.keyField, Value: key}} }

// projection hides _id when the store is keyed by another field.
func (s *MongoStore) projection() bson.D {
	if s.keyField == "_id" {
		return nil
	}
	return bson.D{{Key: "_id", Value: 0}}
}

// Get finds the document with key.
func (s *MongoStore) Get(ctx context.Context, key Key) (bson.D, error) {
	o := options.FindOne()
	if p := s.projection(); p != nil {
		o.SetProjection(p)
	}
	var d bson.D
	if err := s.coll.FindOne(ctx, s.filter(key), o).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			err = ErrNotFound
		}
		return nil, s.errf("get", key, err)
	}
	return d, nil
}

// BatchGet finds keys with $in queries of at most MongoGetChunk keys. Keys that MongoDB takes as
// one (int32 5, int64 5 and 5.0) return the same document under each.
func (s *MongoStore) BatchGet(ctx context.Context, keys []Key) (map[string]bson.D, error) {
	names := make(map[string][]string, len(keys)) // canonical key → KeyString of each alias
	uniq := make([]Key, 0, len(keys))
	for _, k := range keys {
		c := mongoKeyCanon(k)
		if _, seen := names[c]; !seen {
			uniq = append(uniq, k)
		}
		names[c] = append(names[c], KeyString(k))
	}
	result := make(map[string]bson.D, len(keys))
	o := options.Find()
	if p := s.projection(); p != nil {
		o.SetProjection(p)
	}
	read := func(filter bson.D) error {
		cur, err := s.coll.Find(ctx, filter, o)
		if err != nil {
			return s.errf("batch get", nil, err)
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			var d bson.D
			if err := cur.Decode(&d); err != nil {
				return s.errf("batch get", nil, err)
			}
			for _, n := range names[mongoKeyCanon(keyOrNil(d, s.keyField))] {
				result[n] = d
			}
		}
		if err := cur.Err(); err != nil {
			return s.errf("batch get", nil, err)
		}
		return nil
	}
	// Point reads where $in would cost more: for one key always, and on FerretDB, which does
	// not push $in down to SQLite (it scans the collection), for up to ferretDBPointReads keys.
	if len(uniq) == 1 || (len(uniq) <= ferretDBPointReads && s.isFerretDB(ctx)) {
		for _, k := range uniq {
			if err := read(bson.D{{Key: s.keyField, Value: k}}); err != nil {
				return nil, err
			}
		}
		return result, nil
	}
	for chunk := range slices.Chunk(uniq, s.getChunk) {
		if err := read(bson.D{{Key: s.keyField, Value: bson.D{{Key: "$in", Value: chunk}}}}); err != nil {
			return nil, err
		}
	}
	return result, nil
}

// mongoKeyCanon renders a key so that keys MongoDB's equality matches alike are equal: numbers
// compare by value across int32, int64 and double.
func mongoKeyCanon(k Key) string {
	var f float64
	switch x := k.(type) {
	case int32:
		return "n" + strconv.FormatInt(int64(x), 10)
	case int64:
		return "n" + strconv.FormatInt(x, 10)
	case int:
		return "n" + strconv.FormatInt(int64(x), 10)
	case float64:
		f = x
	default:
		return KeyString(k)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		return "n" + strconv.FormatInt(int64(f), 10)
	}
	return "n" + strconv.FormatFloat(f, 'g', -1, 64)
}

// marshal encodes doc once for the write and checks its key and size.
func (s *MongoStore) marshal(doc bson.D) (Key, bson.Raw, error) {
	key, err := s.KeyOf(doc)
	if err != nil {
		return nil, nil, err
	}
	raw, err := bson.Marshal(doc)
	if err != nil {
		return key, nil, s.errf("encode", key, fmt.Errorf("%v: %w", err, ErrUnsupportedValue))
	}
	if len(raw) > MongoMaxDocumentSize {
		return key, nil, s.errf("upsert", key, fmt.Errorf("document is %d bytes of BSON, over MongoDB's limit of %d: %w",
			len(raw), MongoMaxDocumentSize, ErrItemTooLarge))
	}
	return key, raw, nil
}

// Upsert replaces the document with doc's key, inserting it if there is none.
func (s *MongoStore) Upsert(ctx context.Context, doc bson.D) error {
	key, raw, err := s.marshal(doc)
	if err != nil {
		return err
	}
	if _, err := s.coll.ReplaceOne(ctx, s.filter(key), raw, options.Replace().SetUpsert(true)); err != nil {
		return s.errf("upsert", key, err)
	}
	return nil
}

// Delete deletes the document with key; a missing document is not an error.
func (s *MongoStore) Delete(ctx context.Context, key Key) error {
	if _, err := s.coll.DeleteOne(ctx, s.filter(key)); err != nil {
		return s.errf("delete", key, err)
	}
	return nil
}

// BulkWrite checks and encodes every op first (nothing is sent if one fails), then sends
// unordered bulkWrite commands of MongoWriteChunk replace-upserts and deletes. On error some
// chunks, and some ops of the failing chunk, may have been applied.
func (s *MongoStore) BulkWrite(ctx context.Context, ops []WriteOp) error {
	models := make([]mongo.WriteModel, len(ops))
	for i, op := range ops {
		if op.Doc == nil {
			if op.Key == nil {
				return s.errf("bulk write: delete", nil, ErrKeyMissing)
			}
			models[i] = mongo.NewDeleteOneModel().SetFilter(s.filter(op.Key))
			continue
		}
		key, raw, err := s.marshal(op.Doc)
		if err != nil {
			return fmt.Errorf("bulk write: %w", err)
		}
		if op.Key != nil && mongoKeyCanon(op.Key) != mongoKeyCanon(key) {
			return s.errf("bulk write: upsert", op.Key, fmt.Errorf("the document's key %s differs from the op's", KeyString(key)))
		}
		models[i] = mongo.NewReplaceOneModel().SetFilter(s.filter(key)).SetReplacement(raw).SetUpsert(true)
	}
	size := s.writeChunk
	if s.isFerretDB(ctx) {
		size = min(size, ferretDBWriteChunk)
	}
	for chunk := range slices.Chunk(models, size) {
		if _, err := s.coll.BulkWrite(ctx, chunk, options.BulkWrite().SetOrdered(false)); err != nil {
			return s.errf("bulk write", nil, err)
		}
	}
	return nil
}

// InsertNew implements Inserter with unordered insertMany commands of MongoWriteChunk
// documents (FerretDB's deadlock of large commands is in its updates, not its inserts). The
// ops present are those whose insert failed with a duplicate key error (code 11000), of the
// store's key or of another unique index; every op is checked and encoded before anything is
// sent, as in BulkWrite. A store keyed by another field than _id (MongoKeyField) upserts
// instead (BulkWrite) and reports nothing present: without a unique index on that field,
// which the store cannot be sure of, an insert of a key already there would add a second
// document.
func (s *MongoStore) InsertNew(ctx context.Context, ops []WriteOp) ([]int, error) {
	if s.keyField != "_id" {
		return nil, s.BulkWrite(ctx, ops)
	}
	docs := make([]any, len(ops))
	for i, op := range ops {
		if op.Doc == nil {
			return nil, s.errf("insert: a delete", op.Key, ErrUnsupportedValue)
		}
		key, raw, err := s.marshal(op.Doc)
		if err != nil {
			return nil, fmt.Errorf("insert: %w", err)
		}
		if op.Key != nil && mongoKeyCanon(op.Key) != mongoKeyCanon(key) {
			return nil, s.errf("insert", op.Key, fmt.Errorf("the document's key %s differs from the op's", KeyString(key)))
		}
		docs[i] = raw
	}
	var present []int
	for start := 0; start < len(docs); start += s.writeChunk {
		chunk := docs[start:min(start+s.writeChunk, len(docs))]
		_, err := s.coll.InsertMany(ctx, chunk, options.InsertMany().SetOrdered(false))
		dups, ok := duplicateIndexes(err)
		if !ok {
			return present, s.errf("insert", nil, err)
		}
		for _, i := range dups {
			present = append(present, start+i)
		}
	}
	slices.Sort(present)
	return present, nil
}

// duplicateIndexes returns the indexes of the documents an insertMany refused as duplicates,
// and whether err is nothing else (nil, or write errors all of code 11000).
func duplicateIndexes(err error) ([]int, bool) {
	if err == nil {
		return nil, true
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return nil, false
	}
	idx := make([]int, 0, len(bwe.WriteErrors))
	for _, we := range bwe.WriteErrors {
		if we.Code != 11000 {
			return nil, false
		}
		idx = append(idx, we.Index)
	}
	return idx, true
}

// isFerretDB reports whether the server is FerretDB (its buildInfo has ferretdbVersion). It asks
// once; a failed probe counts as MongoDB and is tried again next time.
func (s *MongoStore) isFerretDB(ctx context.Context) bool {
	s.serverMu.Lock()
	defer s.serverMu.Unlock()
	if !s.probed {
		raw, err := s.coll.Database().Client().Database("admin").
			RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Raw()
		if err != nil {
			return false
		}
		_, lookupErr := raw.LookupErr("ferretdbVersion")
		s.probed, s.ferretDB = true, lookupErr == nil
	}
	return s.ferretDB
}

// Scan reads the documents of the key range [p.Min, p.Max) sorted by key, after opts.After when
// set. MongoDB compares a bound only with keys of its own type class (numbers, strings,
// ObjectIDs, …); with no upper bound, keys of the classes that sort after opts.After's are read
// too, so resuming covers a collection whose keys mix types.
func (s *MongoStore) Scan(ctx context.Context, p Partition, opts ScanOptions, fn func([]bson.D) error) error {
	batch := opts.Batch
	if batch <= 0 {
		batch = 500
	}
	var rng bson.D
	if p.Min != nil {
		rng = append(rng, bson.E{Key: "$gte", Value: p.Min})
	}
	if p.Max != nil {
		rng = append(rng, bson.E{Key: "$lt", Value: p.Max})
	}
	filter := bson.D{}
	switch {
	case opts.After != nil && p.Max == nil && len(laterTypes(opts.After)) > 0:
		// {$gt: After} matches only After's type class; add the classes sorted after it.
		or := bson.A{
			bson.D{{Key: s.keyField, Value: bson.D{{Key: "$gt", Value: opts.After}}}},
			bson.D{{Key: s.keyField, Value: bson.D{{Key: "$type", Value: laterTypes(opts.After)}}}},
		}
		if rng != nil {
			filter = bson.D{{Key: s.keyField, Value: rng}}
		}
		filter = append(filter, bson.E{Key: "$or", Value: or})
	case opts.After != nil:
		rng = append(rng, bson.E{Key: "$gt", Value: opts.After})
		filter = bson.D{{Key: s.keyField, Value: rng}}
	case rng != nil:
		filter = bson.D{{Key: s.keyField, Value: rng}}
	}
	o := options.Find().SetSort(bson.D{{Key: s.keyField, Value: 1}}).SetBatchSize(int32(min(batch, math.MaxInt32)))
	if pr := s.projection(); pr != nil {
		o.SetProjection(pr)
	}
	cur, err := s.coll.Find(ctx, filter, o)
	if err != nil {
		return s.errf("scan", nil, err)
	}
	defer cur.Close(ctx)
	docs := make([]bson.D, 0, batch)
	for cur.Next(ctx) {
		var d bson.D
		if err := cur.Decode(&d); err != nil {
			return s.errf("scan", nil, err)
		}
		docs = append(docs, d)
		if len(docs) == batch {
			if err := fn(docs); err != nil {
				return err
			}
			docs = make([]bson.D, 0, batch)
		}
	}
	if err := cur.Err(); err != nil {
		return s.errf("scan", nil, err)
	}
	if len(docs) > 0 {
		return fn(docs)
	}
	return nil
}

// typeClass is the rank of a value's type in MongoDB's comparison order
// (https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/); values of one
// class compare with each other, and a range query matches only its bound's class.
func typeClass(v any) int {
	switch v.(type) {
	case bson.MinKey:
		return 0
	case nil, bson.Null, bson.Undefined:
		return 1
	case int32, int64, int, float64, float32, bson.Decimal128:
		return 2
	case string, bson.Symbol:
		return 3
	case bson.D, bson.M, map[string]any:
		return 4
	case bson.A, []any:
		return 5
	case bson.Binary, []byte:
		return 6
	case bson.ObjectID:
		return 7
	case bool:
		return 8
	case bson.DateTime, time.Time:
		return 9
	case bson.Timestamp:
		return 10
	case bson.Regex:
		return 11
	case bson.MaxKey:
		return 13
	}
	return 12 // JavaScript and the rest: after regex, before maxKey
}

// typeAliases are the $type names of each class that a key (never an array) can have. minKey and
// maxKey keys are left out, and numbers are "number" rather than double/int/long/decimal:
// FerretDB v1 rejects the aliases minKey, maxKey and decimal.
var typeAliases = [][]string{
	1:  {"null"},
	2:  {"number"},
	3:  {"string"},
	4:  {"object"},
	6:  {"binData"},
	7:  {"objectId"},
	8:  {"bool"},
	9:  {"date"},
	10: {"timestamp"},
	11: {"regex"},
}

// laterTypes lists the $type names of the classes that sort after v's.
func laterTypes(v any) bson.A {
	var a bson.A
	for c := typeClass(v) + 1; c < len(typeAliases); c++ {
		for _, t := range typeAliases[c] {
			a = append(a, t)
		}
	}
	return a
}

// EstimateCount returns the collection's count from its metadata.
func (s *MongoStore) EstimateCount(ctx context.Context) (int64, error) {
	n, err := s.coll.EstimatedDocumentCount(ctx)
	if err != nil {
		return 0, s.errf("estimate count", nil, err)
	}
	return n, nil
}

// Partitions splits the key space into at most n key ranges: [nil, k1), [k1, k2), …, [km, nil).
// Split points come from sorted skips, or from $sample with MongoSampledPartitions. A collection
// whose keys mix type classes (strings and numbers, say) gets one partition, as MongoDB's range
// queries cannot cover several classes.
func (s *MongoStore) Partitions(ctx context.Context, n int) ([]Partition, error) {
	whole := []Partition{{}}
	if n <= 1 {
		return whole, nil
	}
	first, err := s.edgeKey(ctx, 1)
	if err != nil || first == nil {
		return whole, err
	}
	last, err := s.edgeKey(ctx, -1)
	if err != nil || last == nil {
		return whole, err
	}
	if typeClass(first) != typeClass(last) {
		return whole, nil
	}
	var splits []Key
	if s.samples > 0 {
		splits, err = s.sampledSplits(ctx, n)
		if stageUnsupported(err) {
			splits, err = s.skipSplits(ctx, n)
		}
	} else {
		splits, err = s.skipSplits(ctx, n)
	}
	if err != nil {
		return nil, err
	}
	ps := make([]Partition, 0, len(splits)+1)
	var lo Key
	for _, k := range splits {
		ps = append(ps, Partition{Min: lo, Max: k})
		lo = k
	}
	return append(ps, Partition{Min: lo}), nil
}

// edgeKey returns the smallest (dir 1) or largest (dir -1) key, nil in an empty collection.
func (s *MongoStore) edgeKey(ctx context.Context, dir int) (Key, error) {
	return s.keyAt(ctx, dir, 0)
}

func (s *MongoStore) keyAt(ctx context.Context, dir int, skip int64) (Key, error) {
	o := options.FindOne().
		SetSort(bson.D{{Key: s.keyField, Value: dir}}).
		SetSkip(skip).
		SetProjection(bson.D{{Key: s.keyField, Value: 1}})
	var d bson.D
	err := s.coll.FindOne(ctx, bson.D{}, o).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, s.errf("partitions", nil, err)
	}
	return keyOrNil(d, s.keyField), nil
}

func (s *MongoStore) skipSplits(ctx context.Context, n int) ([]Key, error) {
	count, err := s.coll.EstimatedDocumentCount(ctx)
	if err != nil {
		return nil, s.errf("partitions", nil, err)
	}
	var splits []Key
	for i := 1; i < n; i++ {
		skip := int64(i) * count / int64(n)
		if skip == 0 {
			continue
		}
		k, err := s.keyAt(ctx, 1, skip)
		if err != nil {
			return nil, err
		}
		if k == nil {
			break // the estimate was high
		}
		splits = appendSplit(splits, k)
	}
	return splits, nil
}

func (s *MongoStore) sampledSplits(ctx context.Context, n int) ([]Key, error) {
	pipeline := mongo.Pipeline{
		{{Key: "$sample", Value: bson.D{{Key: "size", Value: s.samples * n}}}},
		{{Key: "$project", Value: bson.D{{Key: s.keyField, Value: 1}}}},
		{{Key: "$sort", Value: bson.D{{Key: s.keyField, Value: 1}}}},
	}
	cur, err := s.coll.Aggregate(ctx, pipeline)
	if err != nil {
		return nil, s.errf("partitions: $sample", nil, err)
	}
	var docs []bson.D
	if err := cur.All(ctx, &docs); err != nil {
		return nil, s.errf("partitions: $sample", nil, err)
	}
	var splits []Key
	for i := 1; i < n && len(docs) > 0; i++ {
		k := keyOrNil(docs[i*len(docs)/n], s.keyField)
		if k != nil {
			splits = appendSplit(splits, k)
		}
	}
	return splits, nil
}

// stageUnsupported reports a server that lacks $sample: NotImplemented (FerretDB) or
// "Unrecognized pipeline stage name".
func stageUnsupported(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && (se.HasErrorCode(238) || se.HasErrorCode(40324))
}

// appendSplit appends k unless it equals the last split (splits come in key order).
func appendSplit(splits []Key, k Key) []Key {
	if len(splits) > 0 && mongoKeyCanon(splits[len(splits)-1]) == mongoKeyCanon(k) {
		return splits
	}
	return append(splits, k)
}

// KeyOf returns the value of the key field; a missing or null key is ErrKeyMissing.
func (s *MongoStore) KeyOf(doc bson.D) (Key, error) {
	k := keyOrNil(doc, s.keyField)
	if k == nil {
		return nil, s.errf("key of", nil, fmt.Errorf("no field %q: %w", s.keyField, ErrKeyMissing))
	}
	return k, nil
}

// Normalize returns doc as Get returns it after an Upsert: Go types become the BSON types the
// driver decodes (int → int32 or int64, []byte → bson.Binary, time.Time → bson.DateTime, bson.M →
// bson.D), _id moves to the front as MongoDB stores it, and with MongoKeyField other than _id,
// _id is dropped. For a document of decoded BSON values with _id first, it is the identity.
func (s *MongoStore) Normalize(doc bson.D) (bson.D, error) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return nil, s.errf("normalize", keyOrNil(doc, s.keyField), fmt.Errorf("%v: %w", err, ErrUnsupportedValue))
	}
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		return nil, s.errf("normalize", keyOrNil(doc, s.keyField), err)
	}
	if i := slices.IndexFunc(d, func(e bson.E) bool { return e.Key == "_id" }); i >= 0 {
		if s.keyField != "_id" {
			d = slices.Delete(d, i, i+1)
		} else if i > 0 {
			id := d[i]
			copy(d[1:i+1], d[:i])
			d[0] = id
		}
	}
	return d, nil
}

// Close disconnects the client if the store owns it (MongoOwnsClient), else does nothing.
func (s *MongoStore) Close(ctx context.Context) error {
	if !s.ownsClient {
		return nil
	}
	if err := s.coll.Database().Client().Disconnect(ctx); err != nil {
		return s.errf("close", nil, err)
	}
	return nil
}

var _ Store = (*MongoStore)(nil)
