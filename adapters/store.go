package adapters

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Sentinel errors of every Store.
var (
	// ErrNotFound means no document has the key.
	ErrNotFound = errors.New("document not found")
	// ErrItemTooLarge means a document exceeds the store's item size limit (400 KB in DynamoDB,
	// 16 MB in MongoDB); the error names the key.
	ErrItemTooLarge = errors.New("document too large for the store")
	// ErrKeyMissing means a document to write lacks the store's key field(s).
	ErrKeyMissing = errors.New("document has no key")
	// ErrUnsupportedValue means a BSON value has no representation in the store.
	ErrUnsupportedValue = errors.New("value not representable in the store")
)

// Key identifies one document: the value of the store's key field (MongoDB _id, or the value the
// DynamoDB partition key holds). It is a BSON value such as a string, an int32/int64 or a
// bson.ObjectID.
type Key = any

// WriteOp is one write of a bulk write: Doc replaces the document with Key (an upsert), or a nil
// Doc deletes it.
type WriteOp struct {
	Key Key
	Doc bson.D
}

// Partition is one part of a store's key space, for parallel and resumable scans. For MongoDB
// it is the half-open key range [Min, Max) (a nil bound is open); for DynamoDB it is parallel
// scan segment Segment of Segments.
type Partition struct {
	Min, Max          Key
	Segment, Segments int
}

// ScanOptions tune a Scan.
type ScanOptions struct {
	// After resumes a scan after this key (exclusive), as saved by a checkpoint. Optional.
	After Key
	// Batch is the most documents handed to fn at once. Optional; default 500.
	Batch int
}

// Store reads and writes the documents of one collection or table by key. Implementations are
// safe for concurrent use.
type Store interface {
	// Get returns the document with key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key Key) (bson.D, error)
	// BatchGet returns the documents that exist among keys, indexed by KeyString(key).
	BatchGet(ctx context.Context, keys []Key) (map[string]bson.D, error)
	// Upsert replaces (or inserts) the document with doc's key.
	Upsert(ctx context.Context, doc bson.D) error
	// Delete removes the document with key; deleting a missing key is not an error.
	Delete(ctx context.Context, key Key) error
	// BulkWrite applies ops in any order; each key appears at most once in ops.
	BulkWrite(ctx context.Context, ops []WriteOp) error
	// Scan calls fn with batches of the documents of p: in key order for MongoDB, in the
	// segment's order for DynamoDB. fn owns the slice it gets.
	Scan(ctx context.Context, p Partition, opts ScanOptions, fn func([]bson.D) error) error
	// EstimateCount returns an estimate of the number of documents.
	EstimateCount(ctx context.Context) (int64, error)
	// Partitions splits the key space into at most n partitions that together cover it.
	Partitions(ctx context.Context, n int) ([]Partition, error)
	// KeyOf returns the key of a document as this store holds it.
	KeyOf(doc bson.D) (Key, error)
	// Normalize returns doc as a Get would return it after an Upsert of doc (DynamoDB has one
	// number type, for example), so that callers compare like with like.
	Normalize(doc bson.D) (bson.D, error)
	// Close releases the store's connections.
	Close(ctx context.Context) error
}

// Inserter is a Store that can insert documents without replacing, more cheaply than an
// upsert, which must first look its key up (MongoDB: insertMany against a bulk of
// ReplaceOne upserts). The backfill writes through it while the target lacks its keys.
type Inserter interface {
	// InsertNew inserts the documents of ops (Doc set, no deletes) in any order and returns
	// the indexes of the ops it did not insert because the target already holds a document
	// with the same unique key: writing those is the caller's. Any other failure is an error,
	// after which some documents may have been inserted.
	InsertNew(ctx context.Context, ops []WriteOp) (present []int, err error)
}

// KeyString renders a key as a canonical string (MongoDB Extended JSON, canonical mode), so that
// keys of different BSON types never collide: "1" and 1 differ.
func KeyString(k Key) string {
	b, err := bson.MarshalExtJSON(bson.D{{Key: "k", Value: k}}, true, false)
	if err != nil {
		return fmt.Sprintf("%T:%v", k, k)
	}
	return string(b[len(`{"k":`) : len(b)-1])
}
