package verify

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// merge compares a key range of two MongoDB collections keyed by _id by reading both in key
// order at once and walking them side by side (a merge join), instead of looking each batch's
// keys up in the new store: each store is read once, sequentially. Each store's scan runs on
// a goroutine of its own and hands over one batch at a time, so that both keep reading while
// a batch is compared (memory: four batches). A key only the old store has is missing, one
// only the new store has is extra. The checkpoint, saved every CheckpointEvery and at the
// end, is the last old key compared: every key up to it, of both stores, has been compared
// (a crash compares what came after it again; a difference noted twice is one record).
func (v *verifier) merge(ctx context.Context, run catalog.VerifyRun, h *held) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	part, opts := partitionOf(h.task), v.scanOptions(h)
	newBatches, newErr := make(chan []bson.D, 1), make(chan error, 1)
	go scanInto(ctx, v.cfg.New, part, opts, newBatches, newErr)
	nw := &newSide{v: v, batches: newBatches, scanErr: newErr}
	oldBatches, oldErr := make(chan []bson.D, 1), make(chan error, 1)
	go scanInto(ctx, v.cfg.Old, part, opts, oldBatches, oldErr)
	cp := &pendingCheckpoint{v: v, h: h, last: time.Now()}
	fail := func(err error) error {
		cancel(err)
		for range oldBatches {
		}
		nw.drain()
		return err
	}
	for olds := range oldBatches {
		if err := v.wait(ctx, len(olds)); err != nil {
			return fail(err)
		}
		keys, docs := v.keysOf(v.cfg.Old, passOld, olds)
		if len(keys) == 0 {
			continue
		}
		var pairs []pair
		var newDocs int64
		for i, k := range keys {
			// every new key below k is extra; one equal to k is its pair
			for {
				nk, nd, ok := nw.peek()
				if nw.err != nil {
					return fail(nw.err) // not "missing": the new store's scan failed
				}
				if !ok || compareKeys(nk, k) > 0 {
					pairs = append(pairs, pair{key: k, old: docs[i]})
					break
				}
				nw.pop()
				newDocs++
				if compareKeys(nk, k) == 0 {
					pairs = append(pairs, pair{key: k, old: docs[i], cur: nd})
					break
				}
				pairs = append(pairs, pair{key: nk, cur: nd})
			}
		}
		got, err := v.compare(ctx, run, h, pairs, false)
		if err != nil {
			return fail(err)
		}
		got.compared, got.oldDocs, got.newDocs = int64(len(pairs)), int64(len(olds)), newDocs
		if err := cp.add(ctx, keys[len(keys)-1], got); err != nil {
			return fail(err)
		}
	}
	if err := <-oldErr; err != nil {
		cancel(err)
		nw.drain()
		return fmt.Errorf("merging the two stores' scans: scanning the old store: %w", err)
	}
	// What is left of the new store's range is extra.
	var pairs []pair
	var last adapters.Key
	extras := func() error {
		res, err := v.compare(ctx, run, h, pairs, false)
		if err != nil {
			return err
		}
		res.compared, res.newDocs = int64(len(pairs)), int64(len(pairs))
		pairs = pairs[:0]
		return cp.add(ctx, last, res)
	}
	for {
		nk, nd, ok := nw.peek()
		if !ok {
			break
		}
		nw.pop()
		pairs = append(pairs, pair{key: nk, cur: nd})
		last = nk
		if len(pairs) == v.cfg.Batch {
			if err := extras(); err != nil {
				cancel(err)
				nw.drain()
				return err
			}
		}
	}
	if nw.err != nil {
		return nw.err
	}
	if len(pairs) > 0 {
		if err := extras(); err != nil {
			return err
		}
	}
	return cp.flush(ctx)
}

// scanInto scans p of s into batches, one at a time, then sends the scan's result to errc
// and closes batches.
func scanInto(ctx context.Context, s adapters.Store, p adapters.Partition, opts adapters.ScanOptions, batches chan<- []bson.D, errc chan<- error) {
	defer close(batches)
	errc <- s.Scan(ctx, p, opts, func(docs []bson.D) error {
		select {
		case batches <- docs:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
}

// pendingCheckpoint gathers the batches compared since a task's last checkpoint and saves
// them, with the position after them, every CheckpointEvery.
type pendingCheckpoint struct {
	v     *verifier
	h     *held
	res   batchResult
	after adapters.Key
	has   bool
	last  time.Time
}

func (c *pendingCheckpoint) add(ctx context.Context, after adapters.Key, res batchResult) error {
	c.res.add(res)
	c.after, c.has = after, true
	if time.Since(c.last) < c.v.cfg.CheckpointEvery {
		return nil
	}
	return c.flush(ctx)
}

func (c *pendingCheckpoint) flush(ctx context.Context) error {
	if !c.has {
		return nil
	}
	if err := c.v.checkpoint(ctx, c.h, c.after, c.res); err != nil {
		return err
	}
	c.res, c.has, c.last = batchResult{}, false, time.Now()
	return nil
}

// newSide is the new store's ordered scan as a cursor over its batches.
type newSide struct {
	v       *verifier
	batches <-chan []bson.D
	scanErr <-chan error // the scan's result, sent before batches is closed
	buf     []bson.D
	keys    []adapters.Key
	done    bool
	err     error // the scan failed: what follows is unknown, not absent
}

// peek returns the next new document and its key; false at the end of the scan, or when it
// failed (then err is set).
func (n *newSide) peek() (adapters.Key, bson.D, bool) {
	for len(n.buf) == 0 && !n.done {
		docs, ok := <-n.batches
		if !ok {
			n.done = true
			if err := <-n.scanErr; err != nil {
				n.err = fmt.Errorf("scanning the new store: %w", err)
			}
			break
		}
		n.keys, n.buf = n.v.keysOf(n.v.cfg.New, passNew, docs)
	}
	if len(n.buf) == 0 {
		return nil, nil, false
	}
	return n.keys[0], n.buf[0], true
}

func (n *newSide) pop() { n.buf, n.keys = n.buf[1:], n.keys[1:] }

// drain waits for the new store's scan to end (after its context was cancelled).
func (n *newSide) drain() {
	if n.done {
		return
	}
	for range n.batches {
	}
	<-n.scanErr
	n.done = true
}

// compareKeys orders two keys as MongoDB sorts _id: by type class
// (https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/), then by value
// within the class (numbers by value across int32, int64 and double; strings by bytes, the
// simple collation). Types outside the common key types compare by their Extended JSON,
// which is consistent but may differ from the server's order: a merge over such keys reports
// false missing and extra keys, which the recheck then clears.
func compareKeys(a, b adapters.Key) int {
	ca, cb := keyClass(a), keyClass(b)
	if ca != cb {
		return cmp.Compare(ca, cb)
	}
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case bson.ObjectID:
		y := b.(bson.ObjectID)
		return bytes.Compare(x[:], y[:])
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case bson.DateTime:
		return cmp.Compare(x, b.(bson.DateTime))
	}
	if fa, ok := number(a); ok {
		fb, _ := number(b)
		return cmp.Compare(fa, fb)
	}
	return strings.Compare(adapters.KeyString(a), adapters.KeyString(b))
}

// keyClass is the rank of a value's type class in MongoDB's comparison order.
func keyClass(v any) int {
	switch v.(type) {
	case nil:
		return 1
	case int32, int64, float64, bson.Decimal128:
		return 2
	case string, bson.Symbol:
		return 3
	case bson.D, bson.M:
		return 4
	case bson.A:
		return 5
	case bson.Binary:
		return 6
	case bson.ObjectID:
		return 7
	case bool:
		return 8
	case bson.DateTime:
		return 9
	case bson.Timestamp:
		return 10
	case bson.Regex:
		return 11
	}
	return 12
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
