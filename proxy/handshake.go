package proxy

import (
	"encoding/binary"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// The proxy presents itself as a router, as mongos does (and as mongobetween does), so that
// several proxies can stand behind one connection string and no driver discovers the upstream's
// members: SDAM treats a hello reply with msg "isdbgrid" as a mongos and never follows its hosts
// (https://github.com/mongodb/specifications/blob/master/source/server-discovery-and-monitoring/server-discovery-and-monitoring.md#checking-if-a-server-is-a-mongos).

// routerMsg is the hello field value that identifies a mongos.
const routerMsg = "isdbgrid"

// hiddenHelloFields are the hello reply fields that describe the upstream's replica set or its
// own address. A mongos sends none of them.
var hiddenHelloFields = map[string]bool{
	"setName":      true,
	"setVersion":   true,
	"hosts":        true,
	"passives":     true,
	"arbiters":     true,
	"primary":      true,
	"me":           true,
	"secondary":    true,
	"arbiterOnly":  true,
	"passive":      true,
	"hidden":       true,
	"tags":         true,
	"electionId":   true,
	"lastWrite":    true,
	"isreplicaset": true,
	"msg":          true,
}

// isHello reports whether a command is a handshake or monitoring hello
// (https://github.com/mongodb/specifications/blob/master/source/mongodb-handshake/handshake.md).
func isHello(name []byte) bool {
	switch string(name) {
	case "hello", "isMaster", "ismaster":
		return true
	}
	return false
}

// rewriteHello returns a new frame for a hello reply that shows a router instead of the
// upstream: the fields of hiddenHelloFields are dropped and msg is "isdbgrid". Everything else
// (wire versions, limits, logicalSessionTimeoutMinutes, topologyVersion, compression,
// saslSupportedMechs, speculativeAuthenticate, connectionId) passes through, so sessions,
// retryable writes, authentication and streaming hello keep working. The new frame is never
// compressed (hello never is) and carries no checksum; moreToCome is kept.
func rewriteHello(dst []byte, h header, reply Message) ([]byte, error) {
	if reply.Body == nil {
		return nil, fmt.Errorf("%w: hello reply has no document", ErrMalformed)
	}
	dst = dst[:0]
	dst = wiremessage.AppendHeader(dst, 0, h.requestID, h.responseTo, reply.OpCode)
	switch reply.OpCode {
	case wiremessage.OpMsg:
		dst = wiremessage.AppendMsgFlags(dst, reply.Flags&^flagChecksumPresent)
		dst = wiremessage.AppendMsgSectionType(dst, wiremessage.SingleDocument)
	case wiremessage.OpReply:
		dst = append(dst, reply.replyHead[:16]...)
		dst = wiremessage.AppendReplyNumberReturned(dst, 1)
	default:
		return nil, fmt.Errorf("%w: hello reply with opcode %s", ErrMalformed, reply.OpCode)
	}
	start, dst := bsoncore.AppendDocumentStart(dst)
	for rest := reply.Body[4 : len(reply.Body)-1]; len(rest) > 0; {
		e, rem, ok := bsoncore.ReadElement(rest)
		if !ok {
			return nil, fmt.Errorf("%w: hello reply element", ErrMalformed)
		}
		if !hiddenHelloFields[string(e.KeyBytes())] {
			dst = append(dst, e...)
		}
		rest = rem
	}
	dst = bsoncore.AppendStringElement(dst, "msg", routerMsg)
	dst, err := bsoncore.AppendDocumentEnd(dst, start)
	if err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint32(dst[0:4], uint32(len(dst)))
	return dst, nil
}

// errorReply builds the reply a MongoDB server would send for a failed command, in the shape
// the request expects: OP_MSG for OP_MSG, OP_REPLY for OP_QUERY, with the error labels given.
func errorReply(requestID int32, op wiremessage.OpCode, code int32, codeName, errmsg string, labels ...string) []byte {
	var b []byte
	replyOp := wiremessage.OpMsg
	if op == wiremessage.OpQuery {
		replyOp = wiremessage.OpReply
	}
	b = wiremessage.AppendHeader(b, 0, wiremessage.NextRequestID(), requestID, replyOp)
	if replyOp == wiremessage.OpMsg {
		b = wiremessage.AppendMsgFlags(b, 0)
		b = wiremessage.AppendMsgSectionType(b, wiremessage.SingleDocument)
	} else {
		b = wiremessage.AppendReplyFlags(b, 0)
		b = wiremessage.AppendReplyCursorID(b, 0)
		b = wiremessage.AppendReplyStartingFrom(b, 0)
		b = wiremessage.AppendReplyNumberReturned(b, 1)
	}
	doc := bsoncore.NewDocumentBuilder().
		AppendDouble("ok", 0).
		AppendString("errmsg", errmsg).
		AppendInt32("code", code).
		AppendString("codeName", codeName)
	if len(labels) > 0 {
		arr := bsoncore.NewArrayBuilder()
		for _, l := range labels {
			arr.AppendString(l)
		}
		doc.AppendArray("errorLabels", arr.Build())
	}
	b = append(b, doc.Build()...)
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(b)))
	return b
}

// replyOK reports whether a reply document says ok: 1. A reply without an ok field (a cursor
// batch of an old OP_REPLY query) counts as ok.
func replyOK(body bsoncore.Document) bool {
	v, found := lookup(body, "ok")
	if !found {
		return true
	}
	switch v.Type {
	case bsoncore.TypeDouble:
		f, _ := v.DoubleOK()
		return f == 1
	case bsoncore.TypeInt32:
		i, _ := v.Int32OK()
		return i == 1
	case bsoncore.TypeInt64:
		i, _ := v.Int64OK()
		return i == 1
	case bsoncore.TypeBoolean:
		t, _ := v.BooleanOK()
		return t
	}
	return true
}
