package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// ErrMalformedCommand means a command's fields do not have the types its specification gives
// them. The proxy still forwards such a command and lets the server answer; the error is for
// the log.
var ErrMalformedCommand = errors.New("malformed command")

// errNotWrite is parseWrite's answer for a command that is not insert, update, delete or
// findAndModify.
var errNotWrite = errors.New("not a write command")

// writeInfo is what a write request tells about the documents it changes
// (https://www.mongodb.com/docs/manual/reference/command/nav-crud/). Every value in it is a copy:
// it stays valid after the frame it was read from is reused. Its keys assume the collection's
// default collation is simple: under another, {_id: "a"} can match "A" too.
type writeInfo struct {
	// op is "insert", "update", "delete" or "findAndModify" (also for findandmodify).
	op string
	// keys are the _id values the request names: inserted documents' _id, and the _id values
	// that statements' filters pin. They may repeat, and may name documents the write does not
	// change; converging those is harmless.
	keys []bson.RawValue
	// unkeyed are the statements whose filters do not pin _id values.
	unkeyed []unkeyedWrite
	// upsert is set when some statement may insert a document whose _id only the reply tells
	// (see replyKeys).
	upsert bool
	// missingID is set when an inserted document has no _id: the server generates one and
	// does not say which.
	missingID bool
	// unacknowledged is set for writeConcern w: 0 or moreToCome: the reply, if any, does not
	// say which _id values were upserted.
	unacknowledged bool
	// inTxn is set for a write in a multi-document transaction (autocommit: false): what it
	// changes becomes visible at commitTransaction, not with its reply.
	inTxn bool
}

// unkeyedWrite is one statement whose filter does not pin _id values: finding what it changes
// means running the filter, with its collation and variables.
type unkeyedWrite struct {
	filter bson.Raw
	// multi is set when the statement may change more than one document (update multi: true,
	// delete limit: 0).
	multi bool
	// collation is the statement's collation, nil when it has none (the collection's default).
	collation bson.Raw
	// let is the command's let variables, or an update statement's c; nil when there are none.
	let bson.Raw
}

// keyLookup is a find that only fetches documents by _id, so another store holding the same
// documents by _id can answer it. Its keys are copies, in the order the request gave them. Like
// writeInfo, it assumes the collection's default collation is simple.
// MongoDB promises no order without a sort, but in practice returns the matches in _id order
// (it scans the _id index), which is also the order limit takes them in.
type keyLookup struct {
	keys []bson.RawValue
	// limit is the find's limit; 0 means none.
	limit int64
	// batchSize is the size of the first batch; -1 when the request leaves it to the server.
	batchSize   int64
	singleBatch bool
}

// parseWrite reads which documents an insert, update, delete or findAndModify changes. Its
// statements come from the body or from document sequences (Message.Sequence). A statement it
// cannot read is an error naming the command, the statement and the field, and leaves the
// writeInfo holding only what came before it; the server rejects such a request as a whole.
func parseWrite(msg *Message) (writeInfo, error) {
	var w writeInfo
	name := string(msg.Name)
	switch name {
	case "insert", "update", "delete":
		w.op = name
	case "findAndModify", "findandmodify":
		w.op = "findAndModify"
	default:
		return w, fmt.Errorf("%q: %w", name, errNotWrite)
	}
	body := msg.Body
	if err := validateDocument(body, 0); err != nil {
		return w, fmt.Errorf("%s: %v: %w", name, err, ErrMalformedCommand)
	}
	w.unacknowledged = msg.MoreToCome() || unacknowledged(body)
	if v, ok := lookup(body, "autocommit"); ok && v.Type == bsoncore.TypeBoolean && !v.Boolean() {
		w.inTxn = true
	}
	var let bson.Raw
	if v, ok := lookup(body, "let"); ok {
		d, ok := v.DocumentOK()
		if !ok {
			return w, fmt.Errorf("%s: let is %s, not a document: %w", name, v.Type, ErrMalformedCommand)
		}
		let = cloneDoc(d)
	}
	var err error
	switch w.op {
	case "insert":
		err = w.parseInsert(msg)
	case "update":
		err = w.parseUpdates(msg, let)
	case "delete":
		err = w.parseDeletes(msg, let)
	default:
		err = w.parseFindAndModify(name, body, let)
	}
	return w, err
}

func (w *writeInfo) parseInsert(msg *Message) error {
	docs, err := statements(msg, "documents")
	if err != nil {
		return err
	}
	for i, d := range docs {
		id, ok := lookup(d, "_id")
		if !ok {
			w.missingID = true
			continue
		}
		if err := validate(id); err != nil {
			return fmt.Errorf("insert: documents[%d]._id: %v: %w", i, err, ErrMalformedCommand)
		}
		w.keys = append(w.keys, cloneValue(id))
	}
	return nil
}

// statement is the fields of one update or delete statement parseWrite reads; a missing one
// has Type 0. A field given twice counts the first time.
type statement struct {
	q, u, upsert, multi, limit, collation, c bsoncore.Value
}

// readStatement reads the statement at index i of cmd's array field; q must be a document and
// collation, when given, a document.
func readStatement(s bsoncore.Document, cmd, field string, i int) (statement, error) {
	var st statement
	if err := validateDocument(s, 0); err != nil {
		return st, fmt.Errorf("%s: %s[%d]: %v: %w", cmd, field, i, err, ErrMalformedCommand)
	}
	for _, e := range elements(s) {
		var dst *bsoncore.Value
		switch e.Key() {
		case "q":
			dst = &st.q
		case "u":
			dst = &st.u
		case "upsert":
			dst = &st.upsert
		case "multi":
			dst = &st.multi
		case "limit":
			dst = &st.limit
		case "collation":
			dst = &st.collation
		case "c":
			dst = &st.c
		default:
			continue
		}
		if dst.Type == 0 {
			*dst = e.Value()
		}
	}
	if st.q.Type != bsoncore.TypeEmbeddedDocument {
		return st, fieldErr(cmd, field, i, "q", st.q, "a document")
	}
	if st.collation.Type != 0 && st.collation.Type != bsoncore.TypeEmbeddedDocument {
		return st, fieldErr(cmd, field, i, "collation", st.collation, "a document")
	}
	return st, nil
}

func (w *writeInfo) parseUpdates(msg *Message, let bson.Raw) error {
	stmts, err := statements(msg, "updates")
	if err != nil {
		return err
	}
	for i, s := range stmts {
		st, err := readStatement(s, "update", "updates", i)
		if err != nil {
			return err
		}
		if st.u.Type != bsoncore.TypeEmbeddedDocument && st.u.Type != bsoncore.TypeArray {
			return fieldErr("update", "updates", i, "u", st.u, "a document or a pipeline")
		}
		upsert, err := flag("update", "updates", i, "upsert", st.upsert)
		if err != nil {
			return err
		}
		multi, err := flag("update", "updates", i, "multi", st.multi)
		if err != nil {
			return err
		}
		w.upsert = w.upsert || upsert
		stmtLet := let
		if st.c.Type != 0 {
			c, ok := st.c.DocumentOK()
			if !ok {
				return fieldErr("update", "updates", i, "c", st.c, "a document")
			}
			stmtLet = cloneDoc(c)
		}
		w.addFilter(st.q.Document(), multi, st.collation, stmtLet)
	}
	return nil
}

func (w *writeInfo) parseDeletes(msg *Message, let bson.Raw) error {
	stmts, err := statements(msg, "deletes")
	if err != nil {
		return err
	}
	for i, s := range stmts {
		st, err := readStatement(s, "delete", "deletes", i)
		if err != nil {
			return err
		}
		limit, ok := integer(st.limit)
		if !ok || (limit != 0 && limit != 1) {
			return fieldErr("delete", "deletes", i, "limit", st.limit, "0 or 1")
		}
		w.addFilter(st.q.Document(), limit == 0, st.collation, let)
	}
	return nil
}

// parseFindAndModify reads findAndModify's query (https://www.mongodb.com/docs/manual/reference/command/findAndModify/):
// it changes at most one document, and its reply says which (see replyKeys).
func (w *writeInfo) parseFindAndModify(name string, body bsoncore.Document, let bson.Raw) error {
	filter := bsoncore.Document(emptyDoc)
	if v, ok := lookup(body, "query"); ok {
		d, ok := v.DocumentOK()
		if !ok {
			return fmt.Errorf("%s: query is %s, not a document: %w", name, v.Type, ErrMalformedCommand)
		}
		filter = d
	}
	upsertV, _ := lookup(body, "upsert")
	upsert, err := flag(name, "", -1, "upsert", upsertV)
	if err != nil {
		return err
	}
	w.upsert = upsert
	collation, _ := lookup(body, "collation")
	if collation.Type != 0 && collation.Type != bsoncore.TypeEmbeddedDocument {
		return fieldErr(name, "", -1, "collation", collation, "a document")
	}
	w.addFilter(filter, false, collation, let)
	return nil
}

// emptyDoc is the BSON document {}.
var emptyDoc = []byte{5, 0, 0, 0, 0}

// addFilter records what one statement's filter tells: the _id values it pins, or the statement
// as unkeyed. A collation other than simple makes every filter unkeyed: it can make {_id: "a"}
// match "A".
func (w *writeInfo) addFilter(filter bsoncore.Document, multi bool, collation bsoncore.Value, let bson.Raw) {
	simple := collation.Type == 0 || isSimpleCollation(collation.Document())
	if simple {
		if keys, ok := filterKeys(filter); ok {
			for _, k := range keys {
				w.keys = append(w.keys, cloneValue(k))
			}
			return
		}
	}
	u := unkeyedWrite{filter: cloneDoc(filter), multi: multi, let: let}
	if !simple {
		u.collation = cloneDoc(collation.Document())
	}
	w.unkeyed = append(w.unkeyed, u)
}

func isSimpleCollation(c bsoncore.Document) bool {
	n := 0
	for _, e := range elements(c) {
		n++
		if e.Key() != "locale" || stringOf(e.Value()) != "simple" {
			return false
		}
	}
	return n == 1
}

// statements returns the documents of a write command's array field: from the body, or from
// the document sequence of that name (a command may not use both).
func statements(msg *Message, field string) ([]bsoncore.Document, error) {
	name := string(msg.Name)
	docs, inSeq, err := msg.Sequence(field)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	v, inBody := lookup(msg.Body, field)
	switch {
	case inSeq && inBody:
		return nil, fmt.Errorf("%s: %s is both in the body and a document sequence: %w", name, field, ErrMalformedCommand)
	case inSeq:
		return docs, nil
	case !inBody:
		return nil, fmt.Errorf("%s: no %s: %w", name, field, ErrMalformedCommand)
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, fmt.Errorf("%s: %s is %s, not an array: %w", name, field, v.Type, ErrMalformedCommand)
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %v: %w", name, field, err, ErrMalformedCommand)
	}
	docs = make([]bsoncore.Document, len(vals))
	for i, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, fmt.Errorf("%s: %s[%d] is %s, not a document: %w", name, field, i, v.Type, ErrMalformedCommand)
		}
		docs[i] = d
	}
	return docs, nil
}

// fieldErr says which field of which statement has the wrong type; i < 0 means a field of the
// command itself.
func fieldErr(cmd, field string, i int, name string, v bsoncore.Value, want string) error {
	where := cmd + ": " + name
	if i >= 0 {
		where = fmt.Sprintf("%s: %s[%d].%s", cmd, field, i, name)
	}
	if v.Type == 0 {
		return fmt.Errorf("%s is missing: %w", where, ErrMalformedCommand)
	}
	return fmt.Errorf("%s is %s, want %s: %w", where, v.Type, want, ErrMalformedCommand)
}

// flag reads an optional boolean option. Numbers count as their truth value, as the server's
// command parser accepts them.
func flag(cmd, field string, i int, name string, v bsoncore.Value) (bool, error) {
	switch v.Type {
	case 0, bsoncore.TypeNull:
		return false, nil
	case bsoncore.TypeBoolean:
		return v.Boolean(), nil
	case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDouble:
		f, _ := v.AsFloat64OK()
		return f != 0, nil
	}
	return false, fieldErr(cmd, field, i, name, v, "a boolean")
}

// unacknowledged reports a writeConcern of w: 0.
func unacknowledged(body bsoncore.Document) bool {
	v, ok := lookup(body, "writeConcern")
	if !ok {
		return false
	}
	wc, ok := v.DocumentOK()
	if !ok {
		return false
	}
	wv, ok := lookup(wc, "w")
	n, isInt := integer(wv)
	return ok && isInt && n == 0
}

// filterKeys returns the _id values a query filter pins: a top-level _id condition that is an
// equality, $eq or $in, or such a condition inside a top-level $and. Whatever else the filter
// says only narrows the match further, so the documents it matches have _id among these values.
// ok is false when no condition pins _id, or _id appears twice at the top level.
func filterKeys(filter bsoncore.Document) (keys []bsoncore.Value, ok bool) {
	if validateDocument(filter, 0) != nil {
		return nil, false
	}
	found := false
	for _, e := range elements(filter) {
		switch e.Key() {
		case "_id":
			if found {
				return nil, false
			}
			found = true
			keys, ok = idCondition(e.Value())
			if !ok {
				return nil, false
			}
		}
	}
	if found {
		return keys, true
	}
	v, has := lookup(filter, "$and")
	if !has || v.Type != bsoncore.TypeArray {
		return nil, false
	}
	vals, err := v.Array().Values()
	if err != nil {
		return nil, false
	}
	for _, c := range vals {
		if d, isDoc := c.DocumentOK(); isDoc {
			if keys, ok := filterKeys(d); ok {
				return keys, true
			}
		}
	}
	return nil, false
}

// idCondition reads the condition on _id in a filter: v itself when it is a value to compare
// with, the value of {$eq: v}, or the values of {$in: [...]}. Regular expressions, arrays and
// undefined are never keys: they match by pattern, by element, or not at all.
func idCondition(v bsoncore.Value) ([]bsoncore.Value, bool) {
	if isKey(v) {
		return []bsoncore.Value{v}, true
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, false
	}
	e, ok := soleElement(d)
	if !ok {
		return nil, false
	}
	switch e.Key() {
	case "$eq":
		if val := e.Value(); isKey(val) {
			return []bsoncore.Value{val}, true
		}
	case "$in":
		arr, ok := e.Value().ArrayOK()
		if !ok {
			return nil, false
		}
		vals, err := arr.Values()
		if err != nil {
			return nil, false
		}
		for _, val := range vals {
			if !isKey(val) {
				return nil, false
			}
		}
		return vals, true
	}
	return nil, false
}

// isKey reports whether a value in a filter compares by equality and could be a stored _id. A
// document is an operator expression, not a value, when it has a key beginning with $.
func isKey(v bsoncore.Value) bool {
	switch v.Type {
	case bsoncore.TypeArray, bsoncore.TypeRegex, bsoncore.TypeUndefined:
		return false
	case bsoncore.TypeEmbeddedDocument:
		for _, e := range elements(v.Document()) {
			if k := e.Key(); len(k) > 0 && k[0] == '$' {
				return false
			}
		}
	}
	return validate(v) == nil
}

// replyKeys returns the _id values a write's reply names: the upserted documents of an update
// (upserted: [{index, _id}]), and for findAndModify the document it returned (value._id: the
// changed document before or after, or the removed one) and the one it upserted
// (lastErrorObject.upserted). For other commands and for replies without these it is nil. The
// values are copies.
func replyKeys(op string, reply bsoncore.Document) []bson.RawValue {
	var keys []bson.RawValue
	switch op {
	case "update":
		v, ok := lookup(reply, "upserted")
		if !ok || v.Type != bsoncore.TypeArray {
			return nil
		}
		vals, err := v.Array().Values()
		if err != nil {
			return nil
		}
		for _, u := range vals {
			if d, ok := u.DocumentOK(); ok {
				if id, ok := lookup(d, "_id"); ok && validate(id) == nil {
					keys = append(keys, cloneValue(id))
				}
			}
		}
	case "findAndModify":
		for _, field := range [...]string{"value", "lastErrorObject"} {
			v, ok := lookup(reply, field)
			if !ok || v.Type != bsoncore.TypeEmbeddedDocument {
				continue
			}
			idField := "_id"
			if field == "lastErrorObject" {
				idField = "upserted"
			}
			if id, ok := lookup(v.Document(), idField); ok && validate(id) == nil {
				keys = append(keys, cloneValue(id))
			}
		}
	}
	return keys
}

// lookupFields are the find fields a key lookup may carry besides its filter: session, routing
// and API metadata, and options that do not change which documents come back or how.
var lookupFields = map[string]bool{
	"find": true, "filter": true, "$db": true, "lsid": true, "$clusterTime": true,
	"$readPreference": true, "readConcern": true, "limit": true, "batchSize": true,
	"singleBatch": true, "comment": true, "maxTimeMS": true, "apiVersion": true,
	"apiStrict": true, "apiDeprecationErrors": true,
}

// parseKeyLookup reports whether msg is a find that only looks documents up by _id: its filter
// is exactly {_id: v}, {_id: {$eq: v}} or {_id: {$in: [...]}}, and it has no option outside
// lookupFields (no projection, sort, skip, collation, transaction, …) and no read concern but
// local, majority or available (snapshot and causal reads need the server's history). Keys that
// are null, Decimal128 or symbols make it no lookup. The keys of $in come deduplicated, numbers
// equal across int32, int64 and double counting as one; documents count as one only when their
// bytes are equal ({a: 1} and {a: 1.0} do not).
func parseKeyLookup(msg *Message) (keyLookup, bool) {
	l := keyLookup{batchSize: -1}
	if msg.OpCode != wiremessage.OpMsg || string(msg.Name) != "find" || msg.Sequences > 0 || msg.MoreToCome() {
		return l, false
	}
	if msg.Body.Validate() != nil {
		return l, false
	}
	var filter bsoncore.Document
	seen := make(map[string]bool, len(lookupFields))
	for _, e := range elements(msg.Body) {
		key, v := e.Key(), e.Value()
		if !lookupFields[key] || seen[key] {
			return l, false
		}
		seen[key] = true
		var ok bool
		switch key {
		case "find":
			ok = v.Type == bsoncore.TypeString
		case "filter":
			filter, ok = v.DocumentOK()
		case "readConcern":
			ok = servableReadConcern(v)
		case "limit":
			l.limit, ok = integer(v)
			ok = ok && l.limit >= 0
		case "batchSize":
			l.batchSize, ok = integer(v)
			ok = ok && l.batchSize >= 0
		case "singleBatch":
			l.singleBatch, ok = v.BooleanOK()
		default:
			ok = true
		}
		if !ok {
			return l, false
		}
	}
	e, ok := soleElement(filter)
	if !ok || e.Key() != "_id" {
		return l, false
	}
	keys, ok := idCondition(e.Value())
	if !ok {
		return l, false
	}
	distinct := make(map[string]bool, len(keys))
	l.keys = make([]bson.RawValue, 0, len(keys))
	for _, k := range keys {
		switch k.Type {
		case bsoncore.TypeNull, bsoncore.TypeDecimal128, bsoncore.TypeSymbol:
			// null has no place in another store; Decimal128 and symbol equal values of
			// other types (1 and NumberDecimal("1"), "a" and Symbol("a")) canonicalKey keeps apart.
			return keyLookup{batchSize: -1}, false
		}
		c := canonicalKey(k)
		if distinct[c] {
			continue
		}
		distinct[c] = true
		l.keys = append(l.keys, cloneValue(k))
	}
	return l, true
}

// servableReadConcern reports a readConcern of {} or {level: local|majority|available}: one
// another store's current state satisfies.
func servableReadConcern(v bsoncore.Value) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	for _, e := range elements(d) {
		if e.Key() != "level" {
			return false
		}
		switch stringOf(e.Value()) {
		case "local", "majority", "available":
		default:
			return false
		}
	}
	return true
}

// canonicalKey renders a key so that keys MongoDB's equality matches alike are equal: int32,
// int64 and double of the same value (0 and -0 too) render the same; anything else renders as
// its type and bytes.
func canonicalKey(v bsoncore.Value) string {
	switch v.Type {
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		i, _ := v.AsInt64OK()
		return "n" + strconv.FormatInt(i, 10)
	case bsoncore.TypeDouble:
		f, _ := v.DoubleOK()
		if i, ok := integer(v); ok {
			return "n" + strconv.FormatInt(i, 10)
		}
		return "n" + strconv.FormatFloat(f, 'g', -1, 64)
	}
	return string(append([]byte{byte(v.Type)}, v.Data...))
}

// keyValue returns an _id value as the Go value the v2 driver decodes it to, which is what
// adapters.Key holds: string, int32, int64, float64, bson.ObjectID, bson.D for a document,
// bson.Binary, bson.DateTime, bson.Decimal128, … Null, undefined, regular expressions and arrays
// are errors: no stored document has them as its key in another store.
func keyValue(rv bson.RawValue) (any, error) {
	switch bsoncore.Type(rv.Type) {
	case bsoncore.TypeNull, bsoncore.TypeUndefined, bsoncore.TypeRegex, bsoncore.TypeArray:
		return nil, fmt.Errorf("_id of type %s is not a key", bsoncore.Type(rv.Type))
	}
	if err := validate(bsoncore.Value{Type: bsoncore.Type(rv.Type), Data: rv.Value}); err != nil {
		return nil, fmt.Errorf("_id: %w", err)
	}
	// The common key types without the reflection-based decoder (validated just above).
	switch bsoncore.Type(rv.Type) {
	case bsoncore.TypeString:
		return rv.StringValue(), nil
	case bsoncore.TypeObjectID:
		return rv.ObjectID(), nil
	case bsoncore.TypeInt32:
		return rv.Int32(), nil
	case bsoncore.TypeInt64:
		return rv.Int64(), nil
	}
	var v any
	if err := rv.Unmarshal(&v); err != nil {
		return nil, fmt.Errorf("_id of type %s: %w", bsoncore.Type(rv.Type), err)
	}
	return v, nil
}

// maxNesting bounds how deeply validate follows nested documents and arrays (MongoDB allows 200
// levels in a command).
const maxNesting = 200

// validate checks a value down to its innermost documents: bsoncore's Validate checks only the
// framing of a nested document or array, not what is inside it.
func validate(v bsoncore.Value) error { return validateValue(v, 0) }

func validateValue(v bsoncore.Value, depth int) error {
	if err := v.Validate(); err != nil {
		return err
	}
	switch v.Type {
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		return validateDocument(v.Data, depth+1)
	case bsoncore.TypeString, bsoncore.TypeSymbol, bsoncore.TypeJavaScript, bsoncore.TypeDBPointer:
		return checkString(v.Data)
	case bsoncore.TypeBoolean:
		if v.Data[0] > 1 {
			return fmt.Errorf("boolean byte %#x", v.Data[0])
		}
	case bsoncore.TypeBinary:
		// The old binary subtype 2 holds its own length again, which the driver's decoder reads.
		if n := len(v.Data) - 5; v.Data[4] == 2 && n > 4 && int(int32(binary.LittleEndian.Uint32(v.Data[5:]))) != n-4 {
			return errors.New("binary subtype 2 with an inner length that does not match")
		}
	case bsoncore.TypeCodeWithScope:
		if len(v.Data) < 8 {
			return errors.New("malformed code with scope")
		}
		if err := checkString(v.Data[4:]); err != nil {
			return err
		}
		_, scope, ok := v.CodeWithScopeOK()
		if !ok {
			return errors.New("malformed code with scope")
		}
		return validateDocument(scope, depth+1)
	}
	return nil
}

// checkString checks that the BSON string at the start of b ends in NUL, which bsoncore's
// Validate does not.
func checkString(b []byte) error {
	if len(b) < 5 {
		return errors.New("string shorter than its length")
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n < 1 || n > len(b)-4 || b[4+n-1] != 0 {
		return errors.New("string does not end in NUL")
	}
	return nil
}

// validateDocument checks a document as validate checks a value; depth is how deeply it is
// nested.
func validateDocument(d bsoncore.Document, depth int) error {
	if depth > maxNesting {
		return fmt.Errorf("documents nested more than %d deep", maxNesting)
	}
	if err := d.Validate(); err != nil {
		return err
	}
	for _, e := range elements(d) {
		if err := validateValue(e.Value(), depth); err != nil {
			return fmt.Errorf("%s: %w", e.Key(), err)
		}
	}
	return nil
}

// elements returns a document's elements, stopping at the first one that does not read.
func elements(d bsoncore.Document) []bsoncore.Element {
	if len(d) <= 5 {
		return nil
	}
	var out []bsoncore.Element
	for rest := d[4 : len(d)-1]; len(rest) > 0; {
		e, rem, ok := bsoncore.ReadElement(rest)
		if !ok {
			break
		}
		out = append(out, e)
		rest = rem
	}
	return out
}

// soleElement returns the only element of a document.
func soleElement(d bsoncore.Document) (bsoncore.Element, bool) {
	if len(d) <= 5 {
		return nil, false
	}
	e, rem, ok := bsoncore.ReadElement(d[4 : len(d)-1])
	return e, ok && len(rem) == 0
}

// integer reads a whole number given as int32, int64 or an integral double.
func integer(v bsoncore.Value) (int64, bool) {
	switch v.Type {
	case bsoncore.TypeInt32, bsoncore.TypeInt64:
		return v.AsInt64OK()
	case bsoncore.TypeDouble:
		f, ok := v.DoubleOK()
		if !ok || f != math.Trunc(f) || math.Abs(f) >= 1<<63 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}

// stringOf returns a string value, or "" for any other type.
func stringOf(v bsoncore.Value) string {
	if v.Type != bsoncore.TypeString {
		return ""
	}
	return string(stringBytes(v))
}

func cloneValue(v bsoncore.Value) bson.RawValue {
	return bson.RawValue{Type: bson.Type(v.Type), Value: bytes.Clone(v.Data)}
}

func cloneDoc(d bsoncore.Document) bson.Raw {
	return bson.Raw(bytes.Clone(d))
}
