package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// MaxMessageSize is the largest wire message the proxy accepts in either direction, the same
// 48,000,000 bytes that MongoDB advertises as maxMessageSizeBytes.
const MaxMessageSize = 48_000_000

// headerLen is the size of the standard message header
// (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/#standard-message-header).
const headerLen = 16

// Sentinel errors for frames that cannot be forwarded. The connection that sent such a frame is
// closed; every other connection keeps working.
var (
	// ErrFrameTooLarge means a header announced a message above MaxMessageSize.
	ErrFrameTooLarge = errors.New("message exceeds the 48000000-byte maximum")
	// ErrFrameTooSmall means a header announced fewer bytes than the header itself.
	ErrFrameTooSmall = errors.New("message length is shorter than the 16-byte header")
	// ErrMalformed means the message body does not follow its opcode's layout.
	ErrMalformed = errors.New("malformed message")
	// ErrUnsupportedOpcode means the opcode is unknown, or one MongoDB 6.0+ no longer serves
	// (OP_INSERT, OP_UPDATE, OP_DELETE, OP_GET_MORE, OP_KILL_CURSORS).
	ErrUnsupportedOpcode = errors.New("unsupported opcode")
)

// header is the standard message header of one frame.
type header struct {
	length     int32
	requestID  int32
	responseTo int32
	opCode     wiremessage.OpCode
}

func parseHeader(b []byte) header {
	return header{
		length:     int32(binary.LittleEndian.Uint32(b[0:4])),
		requestID:  int32(binary.LittleEndian.Uint32(b[4:8])),
		responseTo: int32(binary.LittleEndian.Uint32(b[8:12])),
		opCode:     wiremessage.OpCode(binary.LittleEndian.Uint32(b[12:16])),
	}
}

// frameReader reads whole wire messages from one stream into a buffer it reuses. Each read
// asks for all the room the buffer has, so a small message usually takes one read system call
// (header and body together); bytes read past the message are kept for the next call.
type frameReader struct {
	r   io.Reader
	buf []byte // buf[start:end] has been read but not yet returned
	// start and end delimit the buffered bytes; next returns buf[:n] and sets start to n.
	start, end int
	// partial is set when the last error came after some bytes of a message had been read: the
	// stream is then out of step and must be closed.
	partial bool
}

// keepBuffer is the largest buffer a connection keeps between messages; a larger one (a 16 MB
// insert, say) is released after use so idle connections do not pin memory.
const keepBuffer = 1 << 20

// next returns the next whole message, header included. The slice is valid until the following
// call. A clean end of stream before any byte of a message is returned as io.EOF.
func (f *frameReader) next() ([]byte, header, error) {
	if f.start > 0 { // drop the message returned last, keep what was read after it
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	if len(f.buf) > keepBuffer && f.end <= 4096 {
		f.buf = append(make([]byte, 0, 4096), f.buf[:f.end]...)[:4096]
	}
	if len(f.buf) < headerLen {
		f.buf = make([]byte, 4096)
	}
	f.partial = false
	if err := f.fill(headerLen, headerLen); err != nil {
		f.partial = f.end > 0
		return nil, header{}, err
	}
	f.partial = true
	h := parseHeader(f.buf)
	switch {
	case h.length < headerLen:
		return nil, h, fmt.Errorf("%w: length %d", ErrFrameTooSmall, h.length)
	case h.length > MaxMessageSize:
		return nil, h, fmt.Errorf("%w: length %d", ErrFrameTooLarge, h.length)
	}
	n := int(h.length)
	if err := f.fill(n, n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, h, fmt.Errorf("reading %d-byte %s body: %w", n, h.opCode, err)
	}
	f.partial = false
	f.start = n
	return f.buf[:n], h, nil
}

// fill reads until at least n bytes are buffered, each read asking for all the room left. The
// buffer grows with the bytes that actually arrive, never past limit, so a peer that announces
// 48 MB and sends little cannot make the proxy allocate 48 MB.
func (f *frameReader) fill(n, limit int) error {
	for f.end < n {
		if f.end == len(f.buf) {
			nb := make([]byte, min(max(2*len(f.buf), 64<<10), limit))
			copy(nb, f.buf[:f.end])
			f.buf = nb
		}
		k, err := f.r.Read(f.buf[f.end:])
		f.end += k
		if f.end >= n {
			return nil // an error that came with the last bytes is returned again by the next read
		}
		if err != nil {
			if err == io.EOF && f.end > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
