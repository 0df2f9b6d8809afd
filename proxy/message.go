package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// OP_MSG flag bits (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/#flag-bits).
// Bits 0-15 are required: a receiver must reject a message with a required bit it does not know.
const (
	flagChecksumPresent = wiremessage.ChecksumPresent
	flagMoreToCome      = wiremessage.MoreToCome
	flagExhaustAllowed  = wiremessage.ExhaustAllowed
	requiredFlagBits    = 0xFFFF
	knownRequiredBits   = flagChecksumPresent | flagMoreToCome
)

// Message is one decoded request or reply: just enough to route, measure and log it. Its byte
// slices point into the frame that was read and are valid only while that frame is handled; the
// frame itself is forwarded as read, never re-encoded, but for hello replies (rewriteHello),
// replies the proxy amends (withWriteConcernError) and retryable writes to a standalone
// (withoutTxnNumber).
type Message struct {
	// OpCode is the message's own opcode: for OP_COMPRESSED, the original opcode inside it.
	OpCode wiremessage.OpCode
	// Compressor is the compressor of an OP_COMPRESSED frame, CompressorNoOp otherwise.
	Compressor wiremessage.CompressorID
	// Flags are the OP_MSG flag bits; zero for other opcodes.
	Flags wiremessage.MsgFlag
	// Body is the command (or reply) document: the kind 0 section of OP_MSG, the query of
	// OP_QUERY with any $query wrapper removed, or the first document of OP_REPLY.
	Body bsoncore.Document
	// Name is the first key of Body, as sent (for a request, the command name).
	Name []byte
	// Database is $db (OP_MSG) or the database part of fullCollectionName (OP_QUERY).
	Database []byte
	// Sequences counts the kind 1 (document sequence) sections of an OP_MSG.
	Sequences int
	// sections is an OP_MSG's sections as sent (checksum excluded), checked by decode; Sequence
	// reads the kind 1 ones from it.
	sections []byte
	// replyHead holds OP_REPLY's fixed fields (responseFlags, cursorID, startingFrom,
	// numberReturned) so a rewritten reply can keep them.
	replyHead []byte
}

// MoreToCome reports whether the sender will send another message without waiting for a reply.
func (m *Message) MoreToCome() bool { return m.Flags&flagMoreToCome != 0 }

// ExhaustAllowed reports whether a request lets the server answer with a stream of replies.
func (m *Message) ExhaustAllowed() bool { return m.Flags&flagExhaustAllowed != 0 }

// Collection returns the collection a request names: the string value of the command's first
// element (find, insert, update, delete, aggregate, count, …) or getMore's "collection" field.
// It is nil for commands that name none (hello, ping, listCollections, aggregate: 1).
func (m *Message) Collection() []byte {
	if m.Body == nil {
		return nil
	}
	if string(m.Name) == "getMore" {
		v, ok := lookup(m.Body, "collection")
		if ok && v.Type == bsoncore.TypeString {
			return stringBytes(v)
		}
		return nil
	}
	elem, ok := firstElement(m.Body)
	if !ok {
		return nil
	}
	v := elem.Value()
	if v.Type != bsoncore.TypeString {
		return nil
	}
	return stringBytes(v)
}

// decode parses a frame (header included). For OP_COMPRESSED it decompresses the payload into
// a new buffer; everything else is parsed in place.
func decode(frame []byte) (Message, error) {
	h := parseHeader(frame)
	return decodeBody(h.opCode, frame[headerLen:], true)
}

func decodeBody(op wiremessage.OpCode, body []byte, allowCompressed bool) (Message, error) {
	switch op {
	case wiremessage.OpMsg:
		return decodeMsg(body)
	case wiremessage.OpQuery:
		return decodeQuery(body)
	case wiremessage.OpReply:
		return decodeReply(body)
	case wiremessage.OpCompressed:
		if !allowCompressed {
			return Message{}, fmt.Errorf("%w: OP_COMPRESSED inside OP_COMPRESSED", ErrMalformed)
		}
		return decodeCompressed(body)
	default:
		return Message{}, fmt.Errorf("%w: %d (%s)", ErrUnsupportedOpcode, int32(op), op)
	}
}

// decodeMsg parses an OP_MSG body: flagBits, sections, optional CRC-32C checksum
// (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/#op_msg).
func decodeMsg(body []byte) (Message, error) {
	m := Message{OpCode: wiremessage.OpMsg}
	if len(body) < 4 {
		return m, fmt.Errorf("%w: OP_MSG shorter than its flags", ErrMalformed)
	}
	m.Flags = wiremessage.MsgFlag(binary.LittleEndian.Uint32(body))
	if unknown := m.Flags & requiredFlagBits &^ knownRequiredBits; unknown != 0 {
		return m, fmt.Errorf("%w: OP_MSG sets unknown required flag bits %#x", ErrMalformed, uint32(unknown))
	}
	rest := body[4:]
	if m.Flags&flagChecksumPresent != 0 {
		if len(rest) < 4 {
			return m, fmt.Errorf("%w: OP_MSG checksum flag set but no checksum", ErrMalformed)
		}
		rest = rest[:len(rest)-4]
	}
	m.sections = rest
	for len(rest) > 0 {
		kind := rest[0]
		rest = rest[1:]
		switch kind {
		case 0:
			if m.Body != nil {
				return m, fmt.Errorf("%w: OP_MSG has more than one body section", ErrMalformed)
			}
			doc, rem, err := readDocument(rest)
			if err != nil {
				return m, fmt.Errorf("OP_MSG body section: %w", err)
			}
			m.Body, rest = doc, rem
		case 1:
			if len(rest) < 4 {
				return m, fmt.Errorf("%w: OP_MSG document sequence shorter than its size", ErrMalformed)
			}
			size := int(int32(binary.LittleEndian.Uint32(rest)))
			if size < 5 || size > len(rest) {
				return m, fmt.Errorf("%w: OP_MSG document sequence size %d outside the message", ErrMalformed, size)
			}
			if err := checkSequence(rest[4:size]); err != nil {
				return m, err
			}
			m.Sequences++
			rest = rest[size:]
		default:
			return m, fmt.Errorf("%w: OP_MSG section kind %d", ErrMalformed, kind)
		}
	}
	if m.Body == nil {
		return m, fmt.Errorf("%w: OP_MSG has no body section", ErrMalformed)
	}
	m.Name = firstKey(m.Body)
	if v, ok := lookup(m.Body, "$db"); ok && v.Type == bsoncore.TypeString {
		m.Database = stringBytes(v)
	}
	return m, nil
}

// Sequence returns the documents of the OP_MSG kind 1 section whose identifier is id, in order
// (https://github.com/mongodb/specifications/blob/master/source/message/OP_MSG.md#kind-1-document-sequence).
// Drivers send a write's "documents", "updates" or "deletes" there rather than in the body, so
// a reader of those fields must look in both places. ok is false when the message has no such
// section. The documents point into the frame; only the slice holding them is allocated.
func (m *Message) Sequence(id string) (docs []bsoncore.Document, ok bool, err error) {
	for rest := m.sections; len(rest) > 0; {
		kind := rest[0]
		rest = rest[1:]
		if kind == 0 {
			if _, rest, err = readDocument(rest); err != nil {
				return nil, false, err
			}
			continue
		}
		if kind != 1 || len(rest) < 4 {
			return nil, false, fmt.Errorf("%w: OP_MSG section kind %d", ErrMalformed, kind)
		}
		size := int(int32(binary.LittleEndian.Uint32(rest)))
		if size < 5 || size > len(rest) {
			return nil, false, fmt.Errorf("%w: OP_MSG document sequence size %d outside the message", ErrMalformed, size)
		}
		seq := rest[4:size]
		rest = rest[size:]
		i := bytes.IndexByte(seq, 0)
		if i < 0 || string(seq[:i]) != id {
			continue
		}
		if ok {
			return nil, false, fmt.Errorf("%w: OP_MSG has two document sequences %q", ErrMalformed, id)
		}
		ok = true
		for seq = seq[i+1:]; len(seq) > 0; {
			var d bsoncore.Document
			if d, seq, err = readDocument(seq); err != nil {
				return nil, false, fmt.Errorf("OP_MSG document sequence %q: %w", id, err)
			}
			docs = append(docs, d)
		}
	}
	return docs, ok, nil
}

// checkSequence checks a document sequence's identifier and that its documents tile it exactly.
func checkSequence(b []byte) error {
	i := bytes.IndexByte(b, 0)
	if i <= 0 {
		return fmt.Errorf("%w: OP_MSG document sequence has no identifier", ErrMalformed)
	}
	for rest := b[i+1:]; len(rest) > 0; {
		var err error
		if _, rest, err = readDocument(rest); err != nil {
			return fmt.Errorf("OP_MSG document sequence %q: %w", b[:i], err)
		}
	}
	return nil
}

// decodeQuery parses OP_QUERY, which drivers still use for the first handshake
// (https://www.mongodb.com/docs/manual/legacy-opcodes/#op_query).
func decodeQuery(body []byte) (Message, error) {
	m := Message{OpCode: wiremessage.OpQuery}
	if len(body) < 4 {
		return m, fmt.Errorf("%w: OP_QUERY shorter than its flags", ErrMalformed)
	}
	rest := body[4:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return m, fmt.Errorf("%w: OP_QUERY fullCollectionName is not terminated", ErrMalformed)
	}
	ns := rest[:i]
	rest = rest[i+1:]
	if len(rest) < 8 {
		return m, fmt.Errorf("%w: OP_QUERY shorter than numberToSkip and numberToReturn", ErrMalformed)
	}
	doc, rem, err := readDocument(rest[8:])
	if err != nil {
		return m, fmt.Errorf("OP_QUERY query: %w", err)
	}
	if len(rem) > 0 {
		if _, rem, err = readDocument(rem); err != nil {
			return m, fmt.Errorf("OP_QUERY returnFieldsSelector: %w", err)
		}
		if len(rem) > 0 {
			return m, fmt.Errorf("%w: %d bytes after OP_QUERY returnFieldsSelector", ErrMalformed, len(rem))
		}
	}
	// Commands sent with read preference are wrapped: {$query: {...}, $readPreference: {...}}.
	if k := firstKey(doc); string(k) == "$query" || string(k) == "query" {
		if e, ok := firstElement(doc); ok {
			if inner, ok := e.Value().DocumentOK(); ok {
				doc = inner
			}
		}
	}
	m.Body = doc
	m.Name = firstKey(doc)
	if dot := bytes.IndexByte(ns, '.'); dot >= 0 {
		m.Database = ns[:dot]
	} else {
		m.Database = ns
	}
	return m, nil
}

// decodeReply parses OP_REPLY, the answer to OP_QUERY
// (https://www.mongodb.com/docs/manual/legacy-opcodes/#op_reply).
func decodeReply(body []byte) (Message, error) {
	m := Message{OpCode: wiremessage.OpReply}
	if len(body) < 20 {
		return m, fmt.Errorf("%w: OP_REPLY shorter than its fixed fields", ErrMalformed)
	}
	m.replyHead = body[:20]
	n := int32(binary.LittleEndian.Uint32(body[16:20]))
	rest := body[20:]
	for i := int32(0); i < n; i++ {
		doc, rem, err := readDocument(rest)
		if err != nil {
			return m, fmt.Errorf("OP_REPLY document %d: %w", i, err)
		}
		if m.Body == nil {
			m.Body = doc
		}
		rest = rem
	}
	if len(rest) > 0 || n < 0 {
		return m, fmt.Errorf("%w: OP_REPLY numberReturned %d does not match its documents", ErrMalformed, n)
	}
	m.Name = firstKey(m.Body)
	return m, nil
}

// decodeCompressed decompresses OP_COMPRESSED with the driver's codecs (snappy, zlib, zstd) and
// parses the original message (https://github.com/mongodb/specifications/blob/master/source/compression/OP_COMPRESSED.md).
func decodeCompressed(body []byte) (Message, error) {
	if len(body) < 9 {
		return Message{}, fmt.Errorf("%w: OP_COMPRESSED shorter than its fixed fields", ErrMalformed)
	}
	orig := wiremessage.OpCode(binary.LittleEndian.Uint32(body[0:4]))
	size := int32(binary.LittleEndian.Uint32(body[4:8]))
	id := wiremessage.CompressorID(body[8])
	if size < 0 || size > MaxMessageSize-headerLen {
		return Message{}, fmt.Errorf("%w: OP_COMPRESSED uncompressedSize %d", ErrFrameTooLarge, size)
	}
	switch id {
	case wiremessage.CompressorNoOp, wiremessage.CompressorSnappy, wiremessage.CompressorZLib, wiremessage.CompressorZstd:
	default:
		return Message{}, fmt.Errorf("%w: OP_COMPRESSED compressor id %d", ErrMalformed, id)
	}
	out, err := driver.DecompressPayload(body[9:], driver.CompressionOpts{Compressor: id, UncompressedSize: size})
	if err != nil {
		return Message{}, fmt.Errorf("%w: OP_COMPRESSED %s payload: %v", ErrMalformed, id, err)
	}
	if int32(len(out)) != size {
		return Message{}, fmt.Errorf("%w: OP_COMPRESSED %s payload is %d bytes, header says %d", ErrMalformed, id, len(out), size)
	}
	m, err := decodeBody(orig, out, false)
	m.Compressor = id
	return m, err
}

// readDocument reads one BSON document's frame: its length prefix must fit and it must end in
// a NUL byte. Its elements are checked lazily by whoever reads them.
func readDocument(b []byte) (bsoncore.Document, []byte, error) {
	if len(b) < 4 {
		return nil, b, fmt.Errorf("%w: document shorter than its length prefix", ErrMalformed)
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n < 5 || n > len(b) {
		return nil, b, fmt.Errorf("%w: document length %d with %d bytes left", ErrMalformed, n, len(b))
	}
	if b[n-1] != 0 {
		return nil, b, fmt.Errorf("%w: document of %d bytes does not end in NUL", ErrMalformed, n)
	}
	return bsoncore.Document(b[:n]), b[n:], nil
}

// firstElement returns a document's first element.
func firstElement(doc bsoncore.Document) (bsoncore.Element, bool) {
	if len(doc) <= 5 {
		return nil, false
	}
	e, _, ok := bsoncore.ReadElement(doc[4 : len(doc)-1])
	return e, ok
}

func firstKey(doc bsoncore.Document) []byte {
	e, ok := firstElement(doc)
	if !ok {
		return nil
	}
	return e.KeyBytes()
}

// lookup finds a top-level field without allocating (bsoncore's Lookup takes a variadic path).
func lookup(doc bsoncore.Document, key string) (bsoncore.Value, bool) {
	if len(doc) <= 5 {
		return bsoncore.Value{}, false
	}
	for rest := doc[4 : len(doc)-1]; len(rest) > 0; {
		e, rem, ok := bsoncore.ReadElement(rest)
		if !ok {
			return bsoncore.Value{}, false
		}
		if string(e.KeyBytes()) == key {
			return e.Value(), true
		}
		rest = rem
	}
	return bsoncore.Value{}, false
}

// stringBytes returns a BSON string value's bytes without its length prefix and NUL, or nil.
func stringBytes(v bsoncore.Value) []byte {
	if len(v.Data) < 5 {
		return nil
	}
	n := int(int32(binary.LittleEndian.Uint32(v.Data)))
	if n < 1 || n+4 > len(v.Data) {
		return nil
	}
	return v.Data[4 : 4+n-1]
}
