// Package adapters holds the Store interface through which every tandem path reads and writes
// documents, and its MongoDB and DynamoDB implementations. Documents are bson.D in both, so a
// transform never knows which store it writes to.
//
// # MongoStore
//
// MongoStore keeps documents as they are, keyed by _id or by another top-level field
// (MongoKeyField). Its Normalize only does what the server does: the driver's encoding of Go
// types (int → int32 or int64, []byte → binary, time.Time → date, bson.M → bson.D) and _id first.
// Scan and Partitions work on key ranges; MongoDB compares a range bound only with keys of its own
// type class, so a collection whose keys mix classes gets one partition.
//
// # DynamoStore and the BSON ↔ AttributeValue mapping
//
// DynamoStore maps each document to one item: top-level fields are attributes, the key field is
// the partition-key attribute of the same name (an S, N or B), and an optional constant sort key
// is added on write and removed on read. Values map as follows.
//
//	BSON (Go type)                           AttributeValue                         read back as
//	string                                   S                                      string
//	bool                                     BOOL                                   bool
//	null (nil, bson.Null)                    NULL                                   nil
//	document (bson.D, bson.M)                M                                      bson.D, fields sorted by name
//	array (bson.A, []any)                    L                                      bson.A
//	binary subtype 0 (bson.Binary, []byte)   B                                      bson.Binary subtype 0
//	int32, int64 (and Go int kinds)          N                                      see "numbers"
//	double, finite, 1e-130 ≤ |x| < 1e126     N                                      see "numbers"
//	double NaN, ±Inf, -0, or out of range    M{"$numberDouble": S "NaN"|"Infinity"|"-Infinity"|"-0"|"1e+300"}   float64
//	decimal128                               M{"$numberDecimal": S "12.50"}         bson.Decimal128
//	objectId                                 M{"$oid": S 24 hex digits}             bson.ObjectID
//	date (bson.DateTime, time.Time)          M{"$date": N epoch milliseconds}       bson.DateTime
//	binary, other subtypes                   M{"$binary": B, "$subtype": N}         bson.Binary
//	regex, timestamp, minKey, maxKey,        —                                      error wrapping ErrUnsupportedValue,
//	JavaScript, symbol, DBPointer, undefined                                        naming the field path ("a.b.2")
//
// Numbers. DynamoDB has one number type, so reading normalizes: an integral N that fits int32
// becomes int32, else int64 if it fits, else a double; a fractional N becomes the nearest double.
// An int64 5 and a double 5.0 both read back as int32 5. An integral double below 2^63 is written
// as its exact integer; other doubles by the shortest decimal digits that read back as the same
// double. Values are kept; only their BSON types change.
//
// Field names. DynamoDB keeps no field order: documents read back with fields sorted by name
// (byte order) at every level, and DynamoStore puts the key field first. A field name that starts
// with "$" is stored with one more "$" ("$oid" → "$$oid", "$" → "$$"), at every level, and a map
// whose names start with a single "$" is always one of the tagged values above: so a user
// document {"$oid": "x"} can never be read back as an ObjectID. Empty field names and duplicate
// names in one document are ErrUnsupportedValue. Reading also accepts what other writers may have
// stored: SS, NS and BS sets read as arrays; N in exponent notation; a top-level attribute with a
// single "$" is kept as it is; a nested map with single-"$" names that is not exactly a tag set is
// an error.
//
// Size. An item over 400 KB (DynamoMaxItemSize, counted by ItemSize with DynamoDB's rules: names
// plus values, numbers by significant digits, 3 bytes per map or list plus 1 per element) fails
// before it is sent, with an error wrapping ErrItemTooLarge that names the key and the size.
//
// # KafkaJournal
//
// KafkaJournal is the journal of changed keys on a Kafka topic (franz-go). Each JournalEntry is
// a BSON record {v: JournalFormatVersion, entry: …} keyed by migration and KeyString(key), so a
// key keeps its partition; Append waits for the idempotent producer's acknowledgements, and
// Consume hands a consumer group's batches to a handler, committing each only after the handler
// succeeded and retrying it with backoff otherwise. Delivery is at least once, in order per key.
// README.md describes the format, partitioning, revocation and bad records.
package adapters
