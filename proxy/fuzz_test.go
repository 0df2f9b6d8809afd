package proxy

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// FuzzDecode feeds arbitrary bytes to the frame reader and decoder: whatever arrives, they must
// return a message or an error, never panic, never read outside the frame, and a decoded hello
// reply must rewrite into a frame that decodes again.
func FuzzDecode(f *testing.F) {
	find := doc(f, bson.D{{Key: "find", Value: "users"}, {Key: "filter", Value: bson.D{{Key: "_id", Value: "k"}}}, {Key: "$db", Value: "app"}})
	hello := doc(f, bson.D{{Key: "isMaster", Value: 1}, {Key: "helloOk", Value: true}})
	reply := doc(f, bson.D{{Key: "ismaster", Value: true}, {Key: "hosts", Value: bson.A{"a:1"}}, {Key: "ok", Value: 1.0}})
	d1 := doc(f, bson.D{{Key: "_id", Value: "a"}})
	seeds := [][]byte{
		opMsg(0, find),
		opMsg(wiremessage.ChecksumPresent, find),
		opMsg(wiremessage.ExhaustAllowed, find, sequence("documents", d1, d1)),
		opQuery("admin.$cmd", hello),
		opReply(reply),
		compressed(f, opMsg(0, find), wiremessage.CompressorSnappy),
		compressed(f, opMsg(0, find), wiremessage.CompressorZLib),
		compressed(f, opQuery("admin.$cmd", hello), wiremessage.CompressorZstd),
		{16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 7, 0, 0},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := frameReader{r: bytes.NewReader(data)}
		for i := 0; i < 4; i++ {
			frame, h, err := fr.next()
			if err != nil {
				return
			}
			m, err := decode(frame)
			if err != nil {
				continue
			}
			_ = m.Collection()
			_ = replyOK(m.Body)
			if m.OpCode == wiremessage.OpMsg || m.OpCode == wiremessage.OpReply {
				out, err := rewriteHello(nil, h, m)
				if err != nil {
					continue
				}
				if _, err := decode(out); err != nil {
					t.Fatalf("rewritten hello does not decode: %v", err)
				}
			}
		}
	})
}
