package proxy

import (
	"encoding/binary"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// Retryable writes to a standalone upstream.
//
// The proxy answers hello as a router (handshake.go), so a driver makes its writes retryable:
// it sends txnNumber with every insert, update, delete, findAndModify and bulkWrite outside a
// transaction. A replica-set member or a mongos accepts that; a standalone mongod refuses any
// command carrying txnNumber with IllegalOperation (20), "Transaction numbers are only allowed
// on a replica set member or mongos", and a driver connected to it directly never sends one
// (https://github.com/mongodb/specifications/blob/master/source/retryable-writes/retryable-writes.md#determining-if-a-write-operation-is-retryable:
// "standalone servers do not support retryable writes").
//
// So on a connection whose upstream is a standalone, the proxy removes txnNumber from a
// retryable write before forwarding it, and changes nothing else: the standalone gets what the
// driver would have sent it directly (lsid included, which a standalone accepts). A command of
// a transaction carries autocommit: false; it is forwarded unchanged and fails as it would
// directly, so a transaction is never silently run without one.
//
// One difference remains: through the proxy the driver still retries such a write once after
// a network error, and a standalone, which keeps no record of txnNumbers, applies the retry
// even when the first attempt had been applied before the connection broke (an $inc counts
// twice, an insert fails with a duplicate key). Directly, the driver would have returned the
// network error instead. Clients to which that matters set retryWrites=false.
//
// Whether the upstream is a standalone comes from the upstream's own hello replies on the
// connection (the handshake, before any write), and until one is seen from the monitor's
// topology (Upstream). Only then is a request inspected, with one look-up of txnNumber.

// txnNumberField is the field that makes a write retryable, or numbers a transaction.
const txnNumberField = "txnNumber"

// standaloneHello reports whether a hello reply comes from a standalone server: neither a
// replica-set member (setName, or isreplicaset for a member not yet configured) nor a mongos
// (msg "isdbgrid"), as SDAM tells server types apart
// (https://github.com/mongodb/specifications/blob/master/source/server-discovery-and-monitoring/server-discovery-and-monitoring.md#parsing-a-hello-or-legacy-hello-response).
// ok is false for a reply that failed, which tells nothing.
func standaloneHello(body bsoncore.Document) (standalone, ok bool) {
	if _, found := lookup(body, "ok"); !found || !replyOK(body) {
		return false, false
	}
	if _, found := lookup(body, "setName"); found {
		return false, true
	}
	if v, found := lookup(body, "isreplicaset"); found && v.Type == bsoncore.TypeBoolean && v.Boolean() {
		return false, true
	}
	if v, found := lookup(body, "msg"); found && v.Type == bsoncore.TypeString && string(stringBytes(v)) == routerMsg {
		return false, true
	}
	return true, true
}

// retryableWrite reports whether an OP_MSG request is a retryable write: it has txnNumber and
// no autocommit, which every command of a transaction carries
// (https://github.com/mongodb/specifications/blob/master/source/transactions/transactions.md#autocommit).
func retryableWrite(msg *Message) bool {
	if msg.OpCode != wiremessage.OpMsg {
		return false
	}
	if _, found := lookup(msg.Body, txnNumberField); !found {
		return false
	}
	_, inTxn := lookup(msg.Body, "autocommit")
	return !inTxn
}

// withoutTxnNumber re-encodes an OP_MSG request, possibly compressed, without the txnNumber of
// its body, into dst. The header keeps its requestID and responseTo; the flags are kept but
// checksumPresent, since the checksum (optional, see
// https://github.com/mongodb/specifications/blob/master/source/message/OP_MSG.md#checksum)
// would no longer match; the sections keep their order, document sequences byte for byte. A
// message that came compressed is compressed again with the same compressor; one that came in
// OP_COMPRESSED with the noop compressor goes plain. dst must not share memory with msg.
func withoutTxnNumber(dst []byte, h header, msg *Message) ([]byte, error) {
	out := wiremessage.AppendHeader(dst[:0], 0, h.requestID, h.responseTo, wiremessage.OpMsg)
	out = wiremessage.AppendMsgFlags(out, msg.Flags&^flagChecksumPresent)
	for rest := msg.sections; len(rest) > 0; {
		kind := rest[0]
		rest = rest[1:]
		switch kind {
		case 0:
			doc, rem, err := readDocument(rest)
			if err != nil {
				return dst, fmt.Errorf("OP_MSG body section: %w", err)
			}
			out = append(out, 0)
			out = appendWithout(out, doc, txnNumberField)
			rest = rem
		case 1:
			if len(rest) < 4 {
				return dst, fmt.Errorf("%w: OP_MSG document sequence shorter than its size", ErrMalformed)
			}
			size := int(int32(binary.LittleEndian.Uint32(rest)))
			if size < 5 || size > len(rest) {
				return dst, fmt.Errorf("%w: OP_MSG document sequence size %d outside the message", ErrMalformed, size)
			}
			out = append(out, 1)
			out = append(out, rest[:size]...)
			rest = rest[size:]
		default:
			return dst, fmt.Errorf("%w: OP_MSG section kind %d", ErrMalformed, kind)
		}
	}
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	if msg.Compressor == wiremessage.CompressorNoOp {
		return out, nil
	}
	// CompressPayload returns a new slice for every compressor but noop, so out may be reused.
	payload, err := driver.CompressPayload(out[headerLen:], driver.CompressionOpts{
		Compressor: msg.Compressor, ZlibLevel: wiremessage.DefaultZlibLevel, ZstdLevel: wiremessage.DefaultZstdLevel})
	if err != nil {
		return out, fmt.Errorf("compressing a request again with %s: %w", msg.Compressor, err)
	}
	size := int32(len(out) - headerLen)
	out = wiremessage.AppendHeader(out[:0], 0, h.requestID, h.responseTo, wiremessage.OpCompressed)
	out = wiremessage.AppendCompressedOriginalOpCode(out, wiremessage.OpMsg)
	out = wiremessage.AppendCompressedUncompressedSize(out, size)
	out = wiremessage.AppendCompressedCompressorID(out, msg.Compressor)
	out = append(out, payload...)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out, nil
}

// appendWithout appends doc to dst without its top-level field key.
func appendWithout(dst []byte, doc bsoncore.Document, key string) []byte {
	start, dst := bsoncore.AppendDocumentStart(dst)
	for rest := doc[4 : len(doc)-1]; len(rest) > 0; {
		e, rem, ok := bsoncore.ReadElement(rest)
		if !ok {
			// decode checked the frame, not every element: keep the rest as sent and let the
			// server reject it.
			dst = append(dst, rest...)
			break
		}
		if string(e.KeyBytes()) != key {
			dst = append(dst, e...)
		}
		rest = rem
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, start)
	return dst
}
