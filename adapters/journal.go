package adapters

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// JournalEntry is one record of the journal of changed keys: a key whose documents must be
// converged, or a write whose keys the proxy could not name (Key nil), which the change-stream
// path and verification cover. An unkeyed entry carries the write's filter when it had one; an
// insert without _id has none, and its entry says only that the namespace changed.
type JournalEntry struct {
	// Migration names the migration the change belongs to.
	Migration string `bson:"migration"`
	// Key is the changed document's key in the source store; nil for an unkeyed write.
	Key Key `bson:"key,omitempty"`
	// Namespace is "database.collection" of the write.
	Namespace string `bson:"ns"`
	// Op is the write command: insert, update, delete or findAndModify.
	Op string `bson:"op"`
	// Filter is the write's filter when it named no key; empty when the write had none (an
	// insert without _id). It is user data: log FilterHash at
	// info level and above, the filter itself only at debug.
	Filter bson.Raw `bson:"filter,omitempty"`
	// Reason says why the entry was journaled: "queue_full", "converge_failed", "unkeyed_write".
	Reason string `bson:"reason"`
	// At is when the proxy saw the write.
	At time.Time `bson:"at"`
	// Position is where Consume read the entry; zero when appending. Not encoded.
	Position JournalPosition `bson:"-"`
}

// JournalPosition says where a consumer read an entry. It is set by KafkaJournal.Consume and is
// never encoded: a producer leaves it zero.
type JournalPosition struct {
	Topic     string
	Partition int32
	Offset    int64
	// HighWatermark is the partition's end offset (the offset the next record will get) when
	// the entry was fetched.
	HighWatermark int64
}

// Behind returns how many records followed the entry in its partition when it was fetched:
// 0 means the consumer had caught up with the partition.
func (p JournalPosition) Behind() int64 { return max(p.HighWatermark-p.Offset-1, 0) }

// FilterHash names a write's filter in logs without showing it: the first 16 hex digits of the
// SHA-256 of the filter's BSON bytes, exactly as the client sent them (the journal carries
// them unchanged), so the proxy's line and the journal worker's line of one entry show the same
// hash. The same filter with its fields in another order, or a number of another type, hashes
// differently. An absent filter (nil, no bytes) hashes to e3b0c44298fc1c14, the empty document
// {} to 49e8e3297545c15a. It is for correlating, not for hiding: a filter with few possible
// values (a status, a small number) can be found by hashing candidates, so the hash is logged
// where the filter must not be, not published.
func FilterHash(filter bson.Raw) string {
	sum := sha256.Sum256(filter)
	return hex.EncodeToString(sum[:8])
}
