// Package transform is the migration spec: its YAML format, its validation, and the forward and
// reverse transforms of documents (bson.D) that every tandem path runs through converge.
//
// A spec is parsed once (Parse, Load) and is then immutable: Forward and Reverse are safe to call
// from any number of goroutines. Parse reports every problem of a file at once, as SpecErrors
// whose lines read "file:line:col: yaml.path: message". No error, Endpoint.String or step
// summary holds a password; print URIs only through RedactURI (and other text that may hold
// one through RedactText).
//
// # Format
//
//	name: users-v2                # required; [a-z0-9][a-z0-9_.-]*
//	source:                       # required; a MongoDB collection
//	  mongodb: {uri: "mongodb://${DB_USER}:${DB_PASS}@127.0.0.1:27017/", database: demo, collection: users}
//	target:                       # required; exactly one of mongodb / dynamodb
//	  mongodb: {uri: "mongodb://127.0.0.1:27017/", database: demo, collection: users_v2}
//	  # dynamodb: {table: users_v2, region: us-east-1, endpoint: "http://127.0.0.1:5000"}
//	key:                          # optional for a MongoDB target
//	  source: _id                 # source key field; default _id
//	  target: _id                 # MongoDB target only: field holding the key; default _id
//	  # partition: pk             # DynamoDB target only, required: attribute holding the key
//	  # sort: {attribute: sk, value: profile}   # DynamoDB only, optional: a constant sort key
//	indexes:                      # optional, MongoDB target only: created by the backfill
//	  - {keys: {profile.email: 1}, unique: true}   # fields of the target shape, 1 or -1
//	  - {name: by_city, keys: {profile.city: 1, age: -1}, sparse: true}
//	verify:                       # optional: what a verification must meet
//	  mismatch_budget: 0          # confirmed mismatches the release report's verdict allows; default 0
//	forward:                      # required, at least one step, run in order
//	  - rename: {from: name, to: profile.full_name}
//	  - move: {from: email, to: profile.email}  # the same as rename
//	  - drop: {path: legacy}
//	  - set: {path: schema_version, value: 2}
//	  - default: {path: status, value: active}
//	  - convert: {path: age, from: int32, to: int64, on_error: fail}
//	  - compute: {path: email_domain, expr: 'doc.email.split("@")[1]'}
//	reverse:                      # optional; replaces the derived reverse entirely
//	  - ...                       # the same step kinds; [] means "no steps"
//
// # Environment variables
//
// Any string value may take text from the environment: ${NAME} is replaced by the variable's
// value when the spec is parsed, as the whole value (uri: ${MONGO_URI}) or inside one
// (uri: "mongodb://${DB_USER}:${DB_PASS}@db.example.net/"). NAME is [A-Za-z_][A-Za-z0-9_]*.
// $${ is a literal ${; any other $ is itself. A variable that is unset, or set but empty, is an
// error naming it (at file:line:col of the value), and so is a malformed reference (${ without
// a closing }, ${1X}, ${A:-default}); errors never quote the value, which may hold a password.
//
// References are expanded in the parsed values, not in the file's text, so a variable cannot
// add YAML structure, and a value with a reference is always a string (value: ${N} with N=5
// sets the string "5", not a number). Keys and comments are not expanded. A variable's value
// is inserted as it is: a password holding @ : / ? # [ ] or % must be percent-encoded in the
// variable. In flow style ({...} or [...]) quote a value that holds a reference, as YAML
// reads { and } there. CEL expressions are code, not values: a reference in one is an error
// (use set to write a value from the environment).
//
// # Credentials and versions
//
// Spec.Redacted is the file's text as the catalog stores it: the user information of every
// URI in it (between :// and the last @, wherever the URI is, comments included) is replaced
// by REDACTED, and so are the values of secret query parameters: authMechanismProperties
// (which may hold an AWS_SESSION_TOKEN) and any parameter whose name holds, in any case,
// password, passwd, secret, token, signature, credential, apikey, api_key, accesskey or
// access_key. User information or a parameter value written only as ${NAME} references
// (mongodb://${DB_USER}:${DB_PASS}@h/) is kept as written: references are not secrets, and
// their values never appear. Spec.Version hashes that text, so a new password, inline or in
// the environment, is not a new version; nor is any other change made only in the
// environment.
//
// Every key name (key.source, key.target, partition, sort attribute) is a top-level field. Steps
// never touch them: a step path whose first segment is a key field is rejected, because the key
// settings alone move the key (see Forward).
//
// Paths are dotted field names ("profile.full_name"): no empty segment, none starting with $.
// A path walks only into embedded documents (bson.D), never into arrays.
//
// # Steps
//
//   - rename / move {from, to}: a missing from is a no-op; an existing to fails with
//     ErrPathConflict. Missing documents on the way to `to` are created.
//   - drop {path}: a missing path is a no-op.
//   - set {path, value}: writes a constant, replacing any value.
//   - default {path, value}: writes a constant only when the path is absent (null is present).
//   - convert {path, to, from?, on_error?, default?}: converts exactly or fails (below). Missing
//     and null values are left as they are. With from, a value of another type is an error.
//     on_error says what an error does: fail (the default) returns ErrConvert; null writes null;
//     keep leaves the value; drop removes the field; default writes the step's `default` value.
//   - compute {path, expr}: writes the result of a CEL expression over `doc`, the document as
//     it is at that step (after the steps before it).
//
// # Path conflicts
//
// Within the forward list, and within an explicit reverse list, a step that writes a path
// (set, default, compute, or the `to` of a rename or move) is rejected with ErrPathConflict,
// naming the earlier step, when an earlier step of the same list
//
//   - moved away or dropped that path, a document holding it, or a field inside it (move
//     email -> profile.email, then set email): the name of a moved or removed field is not
//     reused;
//   - wrote that path or a field inside it (set, default, compute, convert, or the `to` of a
//     rename or move), unless the later step is a default, which only fills a missing value:
//     the later write would replace the earlier one, or a rename would find its destination
//     taken;
//   - set a document holding it to a constant that is not a document, or converted one: the
//     write could only fail.
//
// Reading or changing what an earlier step wrote is no conflict: a chain of renames (a -> b,
// b -> c), a convert of a renamed field, a drop of a temporary field a compute made, a
// default after a rename, or a write inside a document an earlier step moved or set as a
// whole (rename address -> profile.address, then compute profile.address.country). One
// consequence: two fields cannot swap names (a -> t, b -> a, t -> b). The derived reverse is
// not checked, and a conflict between the lists (a reverse step meeting a field the forward
// steps wrote) shows only at run time, with `tandem validate --sample`.
//
// Constants are YAML values: integers become int32 when they fit and int64 otherwise, floats
// double, true/false bool, null null, mappings documents (in YAML order), sequences arrays, and
// other scalars strings; an unquoted 2024-01-01 is a string too. For a date constant, compute it
// with CEL: timestamp("2024-01-01T00:00:00Z").
//
// # Conversions
//
// The types are string, int32, int64, double, decimal128, bool, date and objectId. Supported
// pairs (anything else is rejected by Parse when from is given, and fails at run time otherwise):
//
//	string     -> int32, int64 (base 10), double, decimal128, bool ("true"/"false"),
//	              date (RFC 3339, at most millisecond precision), objectId (24 hex digits)
//	int32      -> string, int64, double, decimal128, bool (0 and 1 only)
//	int64      -> string, int32 (in range), double (exactly representable), decimal128,
//	              bool (0 and 1 only), date (epoch milliseconds)
//	double     -> string (shortest form that reads back, 'g'), int32, int64 (integral, in
//	              range), decimal128 (that same shortest form)
//	decimal128 -> string, int32, int64 (integral, in range), double (see below)
//	bool       -> string, int32, int64 (0, 1)
//	date       -> string (RFC 3339 with milliseconds, UTC; years 0-9999), int64 (epoch ms)
//	objectId   -> string (24 lowercase hex digits)
//
// Exact means no rounding, truncation or wrapping (a NaN's payload bits are the one thing not
// kept): double 1.5 to int32 fails, "abc" to int32
// fails, int64 2^31 to int32 fails. A decimal string (or decimal128) converts to double only if
// it is the shortest form of that double: "0.1" does, "0.30000000000000001" does not.
//
// # Reverse
//
// Without a reverse list, the reverse is derived, step by step in reverse order:
// rename/move a→b becomes rename/move b→a; convert with from, on_error fail and a lossless pair
// becomes the opposite convert; set and compute become a drop of their path, which restores the
// source only if source documents lack that field (`tandem validate --sample` catches the rest).
// The lossless pairs are int32→int64, int32→double, int32→string, int32→decimal128,
// int64→string, int64→decimal128, double→string, decimal128→string, objectId→string,
// bool→string, date→int64 and date→string. Drop, default, and any other convert are
// irreversible: Parse rejects a spec that has one and no reverse list, naming the step
// (ErrIrreversible).
//
// # Field order
//
// A rename within one document keeps the field's position. A field that moves to another
// document, and a field that set, default or compute creates, goes at the end of its document.
// So Reverse restores fields and values but not always their order: compare round trips with
// Equal, which ignores field order, as reverse(forward(d)) == d is meant.
//
// # Empty documents
//
// Removing a field (rename's source, drop, on_error: drop) that leaves its embedded document
// empty removes that document too, and so on upwards (never the top level). This makes a move
// into a new embedded document reversible: {x: 1} → {p: {x: 1}} → {x: 1}, and likewise the drop
// that reverses a set or compute of p.v. The price: a document that was already empty on the way
// to a field a step writes ({p: {}} with rename x → p.x, or set p.v) comes back without it.
//
// # CEL
//
// Expressions are compiled once, by Parse, in an environment with one variable, doc (a map
// from string to dyn), and cel-go's string extensions (split, lowerAscii, replace, substring, …).
// Values reach CEL as int32/int64 → int, double → double, ObjectID → hex string, date →
// timestamp, decimal128 → string, binary → bytes, documents → maps and arrays → lists. Results
// come back as int → int64 (never narrowed), uint → int64, bytes → binary, timestamp → date, list
// → array, map → document with sorted keys. Each evaluation is capped at CELCostLimit; errors,
// including a missing field, fail the step with ErrCEL. An expression that uses doc only as
// doc.FIELD gets only those fields converted, so its cost does not grow with the document.
//
// # Keys
//
// Forward first checks that the document has key.source (else ErrMissingKey), runs the steps,
// then renames key.source to key.target (MongoDB) or to the partition attribute (DynamoDB) in
// place, and inserts the constant sort attribute right after it. A document that already holds
// a field of that name fails with ErrKeyConflict rather than lose it. Reverse undoes this
// first (the sort attribute must hold the constant), then runs the reverse steps.
package transform
