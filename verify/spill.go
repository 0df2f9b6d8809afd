package verify

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// A join task's spill: for each side (the old store, the new store) Buckets append-only files
// of records, one record per document read: its key, a digest of the document as the
// comparison sees it, and flags. A record goes to the bucket of its key's hash, so that the
// two sides of a key land in files of the same number, which the join then reads one pair at
// a time. Appends are buffered per file and written (open, append, close: at most two file
// descriptors at once, however many buckets) when a buffer fills and at every checkpoint; sizes
// counts what was written, which the checkpoint records. A resume cuts every file back to its
// recorded size, so what lies beyond (batches read after the checkpoint, to be read again) is
// gone, and nothing is in a file twice.
//
// Each record carries a CRC-32C of its body: the files are not synced (a killed process loses
// nothing the kernel holds; a machine that lost its page cache may leave a file of the right
// length with garbage in it), and a record that fails its check is errSpillDamaged, on which
// the task starts its scans again.

// The sides of a spill.
const (
	sideOld = 0
	sideNew = 1
)

// The flags of a record.
const (
	flagUntransformable = 1 << iota // old: the transform (or the new store's mapping) rejected it
	flagInvariant                   // new: an invariant does not hold, or cannot be evaluated
	flagNoDigest                    // a value the digest cannot stand for: always compared in full
)

// spillFlush is the buffered bytes of one file that make it written.
const spillFlush = 4 << 10

// maxSpillRecord bounds a record's body, so that a damaged length cannot make a reader
// allocate gigabytes.
const maxSpillRecord = 32 << 20

var (
	errSpillLost    = errors.New("spill files missing or shorter than the checkpoint says")
	errSpillDamaged = errors.New("spill record damaged")
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// spillRecord is one document's record.
type spillRecord struct {
	flags  byte
	digest [digestSize]byte
	ks     string // adapters.KeyString of the key: the join's identity
	key    []byte // the key as a BSON document {k: key}, for the look-ups of a difference
}

type spill struct {
	dir     string
	buckets int

	mu    sync.Mutex
	bufs  [][]byte // per file: the old store's buckets, then the new store's
	sizes []int64  // bytes written to each file
}

// openSpill opens a spill in dir. With sizes nil it starts empty (dir is created, and emptied
// if it exists); otherwise every file is cut back to its size, and errSpillLost is returned
// when one is missing or shorter.
func openSpill(dir string, buckets int, sizes []int64) (*spill, error) {
	s := &spill{dir: dir, buckets: buckets, bufs: make([][]byte, 2*buckets), sizes: make([]int64, 2*buckets)}
	if sizes == nil {
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("emptying the spill directory %s: %w", dir, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the spill directory %s: %w", dir, err)
		}
		return s, nil
	}
	if len(sizes) != 2*buckets {
		return nil, fmt.Errorf("%w: %d sizes recorded for %d buckets", errSpillLost, len(sizes), buckets)
	}
	for i, want := range sizes {
		name := s.file(i)
		fi, err := os.Stat(name)
		switch {
		case errors.Is(err, os.ErrNotExist) && want == 0:
			continue
		case err != nil:
			return nil, fmt.Errorf("%w: %v", errSpillLost, err)
		case fi.Size() < want:
			return nil, fmt.Errorf("%w: %s holds %d bytes, the checkpoint %d", errSpillLost, name, fi.Size(), want)
		}
		if err := os.Truncate(name, want); err != nil {
			return nil, fmt.Errorf("cutting %s back to its checkpoint: %w", name, err)
		}
	}
	copy(s.sizes, sizes)
	return s, nil
}

func (s *spill) file(i int) string {
	side := "old"
	if i >= s.buckets {
		side = "new"
	}
	return filepath.Join(s.dir, fmt.Sprintf("%s-%04d", side, i%s.buckets))
}

// add appends the records of one side and calls then, both under the spill's lock: a
// checkpoint sees either both (the records and the position after them) or neither.
func (s *spill) add(side int, recs []spillRecord, then func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		f := side*s.buckets + bucketOf(r.ks, s.buckets)
		s.bufs[f] = appendRecord(s.bufs[f], r)
		if len(s.bufs[f]) >= spillFlush {
			if err := s.write(f); err != nil {
				return err
			}
		}
	}
	then()
	return nil
}

// checkpoint writes every buffer and calls fn with the files' sizes, under the spill's lock.
func (s *spill) checkpoint(fn func(sizes []int64)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range s.bufs {
		if err := s.write(f); err != nil {
			return err
		}
	}
	fn(append([]int64(nil), s.sizes...))
	return nil
}

// write appends file f's buffer to it; s.mu is held.
func (s *spill) write(f int) error {
	if len(s.bufs[f]) == 0 {
		return nil
	}
	fh, err := os.OpenFile(s.file(f), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spilling to disk: %w", err)
	}
	n, err := fh.Write(s.bufs[f])
	s.sizes[f] += int64(n)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spilling to disk: %w", err)
	}
	s.bufs[f] = s.bufs[f][:0]
	return nil
}

// read calls fn with every record of one side's bucket, in the order they were added.
func (s *spill) read(side, bucket int, fn func(spillRecord) error) error {
	name := s.file(side*s.buckets + bucket)
	fh, err := os.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing fell in this bucket
	}
	if err != nil {
		return fmt.Errorf("reading the spill: %w", err)
	}
	defer fh.Close()
	r := bufio.NewReaderSize(fh, 64<<10)
	var head [8]byte
	var body []byte
	for off := int64(0); ; {
		if _, err := io.ReadFull(r, head[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%w: %s at byte %d: %v", errSpillDamaged, name, off, err)
		}
		n, sum := binary.LittleEndian.Uint32(head[:4]), binary.LittleEndian.Uint32(head[4:])
		if n < 1+digestSize+4 || n > maxSpillRecord {
			return fmt.Errorf("%w: %s at byte %d: a record of %d bytes", errSpillDamaged, name, off, n)
		}
		body = append(body[:0], make([]byte, n)...)
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("%w: %s at byte %d: %v", errSpillDamaged, name, off, err)
		}
		if crc32.Checksum(body, crcTable) != sum {
			return fmt.Errorf("%w: %s at byte %d: checksum", errSpillDamaged, name, off)
		}
		rec, ok := decodeRecord(body)
		if !ok {
			return fmt.Errorf("%w: %s at byte %d: malformed", errSpillDamaged, name, off)
		}
		if err := fn(rec); err != nil {
			return err
		}
		off += 8 + int64(n)
	}
}

// appendRecord encodes r: length, CRC-32C, then the body (flags, digest, the key string's
// length and bytes, the key's BSON).
func appendRecord(b []byte, r *spillRecord) []byte {
	n := 1 + digestSize + 4 + len(r.ks) + len(r.key)
	start := len(b)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, 0) // the CRC, below
	body := len(b)
	b = append(b, r.flags)
	b = append(b, r.digest[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(r.ks)))
	b = append(b, r.ks...)
	b = append(b, r.key...)
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(b[body:], crcTable))
	return b
}

func decodeRecord(body []byte) (spillRecord, bool) {
	var r spillRecord
	r.flags = body[0]
	copy(r.digest[:], body[1:1+digestSize])
	rest := body[1+digestSize:]
	n := int(binary.LittleEndian.Uint32(rest))
	rest = rest[4:]
	if n > len(rest) {
		return r, false
	}
	r.ks = string(rest[:n])
	r.key = append([]byte(nil), rest[n:]...)
	return r, true
}
