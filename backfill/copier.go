package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
)

// copied is one document of a batch that is written: its key, the source document as read
// (for the re-check) and the write.
type copied struct {
	key  adapters.Key
	src  []byte // the source document's BSON as the batch read it
	op   adapters.WriteOp
	size int
}

// batchCounts are what one batch adds to its partition's counters.
type batchCounts struct {
	copied, bytes, dead, reconverged, errors int64
}

// copyPartition copies a held partition from its checkpoint to its end, batch by batch, then
// marks it done. A read error restarts the scan from the checkpoint.
func (b *Backfill) copyPartition(ctx context.Context, h *held) error {
	part := partitionOf(h.part)
	for attempt := 0; ; attempt++ {
		var after adapters.Key
		if h.lease.HasAfter {
			after = h.lease.After
		}
		err := b.cfg.Old.Scan(ctx, part, adapters.ScanOptions{After: after, Batch: b.cfg.Batch}, func(docs []bson.D) error {
			return b.batch(ctx, h, docs)
		})
		if err == nil {
			break
		}
		if errors.Is(err, errLeaseLost) || ctx.Err() != nil || errors.Is(err, errAborted) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		b.log.Warn("reading the source; resuming from the checkpoint", "partition", h.part.Index, "attempt", attempt+1, "err", err)
		b.m.errors.WithLabelValues("read").Inc()
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
	if err := b.save(ctx, h, func(l *catalog.BackfillLease) { l.Done = true }); err != nil {
		return err
	}
	b.done.Add(1)
	b.log.Info("partition done", "partition", h.part.Index, "copied", h.lease.Copied, "dead_lettered", h.lease.DeadLettered)
	return nil
}

// errAborted is what a test's afterWrite hook returns to stop a run as a crash would.
var errAborted = errors.New("aborted by a test hook")

func backoff(attempt int) time.Duration {
	return min(100*time.Millisecond<<min(attempt, 5), 2*time.Second)
}

// batch copies one batch: transform and normalize each document (dead-lettering those that
// fail), announce the keys in the lease (Pending), write them in chunks under the throttle,
// re-check them against the source (the interplay rule), and save the checkpoint.
func (b *Backfill) batch(ctx context.Context, h *held, docs []bson.D) error {
	if len(docs) == 0 {
		return nil
	}
	var cnt batchCounts
	items := make([]copied, 0, len(docs))
	var lastKey adapters.Key
	for _, d := range docs {
		key, err := b.cfg.Old.KeyOf(d)
		if err != nil {
			b.cfg.Log.Warn("source document without a key skipped", "err", err)
			continue
		}
		lastKey = key
		it, step, err := b.prepareDoc(key, d)
		if err != nil {
			if err := b.deadLetter(ctx, key, step, err); err != nil {
				return err
			}
			cnt.dead++
			continue
		}
		items = append(items, it)
	}
	if lastKey == nil {
		return nil
	}
	keys := make([]any, len(items))
	for i, it := range items {
		keys[i] = it.key
	}
	if b.cfg.hooks.afterRead != nil {
		b.cfg.hooks.afterRead(ctx, keys)
	}
	if len(items) > 0 {
		if err := b.save(ctx, h, func(l *catalog.BackfillLease) { l.Pending = keys }); err != nil {
			return err
		}
	}
	written, err := b.write(ctx, h, items, &cnt)
	if err == nil && b.cfg.hooks.afterWrite != nil {
		err = b.cfg.hooks.afterWrite(ctx, keys)
	}
	if errors.Is(err, errAborted) {
		return err
	}
	// Re-check what was written even when the write stopped early (lease lost): the rest is
	// the next owner's.
	if !b.cfg.hooks.noRecheck && len(written) > 0 {
		if ctx.Err() != nil {
			return ctx.Err() // Pending stays: the next owner converges the batch's keys
		}
		n, rerr := b.recheck(ctx, h, written)
		if rerr != nil {
			return rerr
		}
		cnt.reconverged += int64(n)
	}
	if err != nil {
		return err
	}
	if err := b.save(ctx, h, func(l *catalog.BackfillLease) {
		l.After, l.HasAfter, l.Pending = lastKey, true, nil
		l.Copied += cnt.copied
		l.Bytes += cnt.bytes
		l.DeadLettered += cnt.dead
		l.Reconverged += cnt.reconverged
		l.Errors += cnt.errors
	}); err != nil {
		return err
	}
	b.copied.Add(cnt.copied)
	b.bytes.Add(cnt.bytes)
	b.dead.Add(cnt.dead)
	b.reconv.Add(cnt.reconverged)
	m := b.m
	m.documents.WithLabelValues("copied").Add(float64(cnt.copied))
	m.documents.WithLabelValues("dead_lettered").Add(float64(cnt.dead))
	m.documents.WithLabelValues("reconverged").Add(float64(cnt.reconverged))
	m.bytes.Add(float64(cnt.bytes))
	return nil
}

// prepareDoc transforms and normalizes one document and checks its size against the target's
// limit; on failure it returns the step that failed, for the dead letter.
func (b *Backfill) prepareDoc(key adapters.Key, d bson.D) (copied, string, error) {
	src, err := bson.Marshal(d)
	if err != nil {
		return copied{}, "read", fmt.Errorf("encoding source document %s: %w", adapters.KeyString(key), err)
	}
	out, err := b.cfg.Spec.Forward(d)
	if err != nil {
		return copied{}, stepName(err), err
	}
	norm, err := b.cfg.New.Normalize(out)
	if err != nil {
		return copied{}, "write", err
	}
	size, _ := bsonSize(norm)
	if size < 0 {
		return copied{}, "write", fmt.Errorf("key %s: the document has no BSON encoding: %w", adapters.KeyString(key), adapters.ErrUnsupportedValue)
	}
	if collectionOf(b.cfg.New) != nil && size > adapters.MongoMaxDocumentSize {
		return copied{}, "write", fmt.Errorf("key %s: document is %d bytes of BSON, over MongoDB's limit of %d: %w",
			adapters.KeyString(key), size, adapters.MongoMaxDocumentSize, adapters.ErrItemTooLarge)
	}
	tkey, err := b.cfg.New.KeyOf(norm)
	if err != nil {
		return copied{}, "write", err
	}
	return copied{key: key, src: src, op: adapters.WriteOp{Key: tkey, Doc: norm}, size: size}, "", nil
}

// stepName names the failing transform step, as converge's dead letters do.
func stepName(err error) string {
	var se *transform.StepError
	if !errors.As(err, &se) {
		return "transform"
	}
	if se.Step < 0 {
		return se.Direction + " key " + se.Path
	}
	return fmt.Sprintf("%s[%d] %s %s", se.Direction, se.Step, se.Kind, se.Path)
}

// deadLetter records a document that cannot be copied; the copy goes on without it.
func (b *Backfill) deadLetter(ctx context.Context, key adapters.Key, step string, cause error) error {
	ks := adapters.KeyString(key)
	b.log.Warn("document dead-lettered", "key", ks, "step", step, "reason", cause.Error())
	return b.retry(ctx, "dead letter", func(ctx context.Context) error {
		return b.cfg.Catalog.AddDeadLetter(ctx, catalog.DeadLetter{
			Migration: b.cfg.Migration, KeyString: ks, Key: key, Direction: catalog.DirectionForward,
			Step: "backfill " + step, Reason: cause.Error(), SpecVersion: b.cfg.Spec.Version,
		})
	})
}

// write writes items in chunks of Config.Chunk, each after the throttle lets it through, and
// returns the items written. A chunk that fails for reasons of its own documents (too large,
// not representable, a unique index, a key of the wrong type) is written one by one, and the
// documents that still fail are dead-lettered; other failures are retried with backoff. It
// stops early, with errLeaseLost, when the partition has been taken over.
func (b *Backfill) write(ctx context.Context, h *held, items []copied, cnt *batchCounts) ([]copied, error) {
	written := make([]copied, 0, len(items))
	insert := true // see put
	for chunk := range slices.Chunk(items, b.cfg.Chunk) {
		if err := b.usable(ctx, h); err != nil {
			return written, err
		}
		size := 0
		ops := make([]adapters.WriteOp, len(chunk))
		for i, it := range chunk {
			ops[i], size = it.op, size+it.size
		}
		if err := b.thr.wait(ctx, len(chunk), size); err != nil {
			return written, err
		}
		for attempt := 0; ; attempt++ {
			start := time.Now()
			err := b.put(ctx, ops, &insert)
			b.thr.observe(time.Since(start), len(chunk), size, err)
			if err == nil {
				written = append(written, chunk...)
				cnt.copied += int64(len(chunk))
				cnt.bytes += int64(size)
				break
			}
			if ctx.Err() != nil {
				return written, ctx.Err()
			}
			cnt.errors++
			if docSpecific(err) {
				w, err := b.writeOneByOne(ctx, chunk, cnt)
				written = append(written, w...)
				if err != nil {
					return written, err
				}
				break
			}
			b.m.errors.WithLabelValues("write").Inc()
			b.log.Warn("writing to the target; retrying", "partition", h.part.Index, "attempt", attempt+1, "err", err)
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return written, err
			}
			if err := b.usable(ctx, h); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// put writes one chunk. A target that can insert (adapters.Inserter: MongoDB) first gets the
// chunk as inserts, which cost no look-up of the key, and then upserts of the keys it already
// held; the result is the upserts' (every document as the batch read it), so the re-check and
// the checkpoint treat both alike. Once most keys of a chunk were there (a batch copied again
// after a restart, a target filled before with AllowExisting), the rest of the batch is only
// upserted; insert says which, for the batch.
func (b *Backfill) put(ctx context.Context, ops []adapters.WriteOp, insert *bool) error {
	ins, ok := b.cfg.New.(adapters.Inserter)
	if !ok || !*insert {
		return b.cfg.New.BulkWrite(ctx, ops)
	}
	present, err := ins.InsertNew(ctx, ops)
	if err != nil {
		return err
	}
	if 2*len(present) > len(ops) {
		*insert = false
	}
	if len(present) == 0 {
		return nil
	}
	held := make([]adapters.WriteOp, len(present))
	for i, j := range present {
		held[i] = ops[j]
	}
	return b.cfg.New.BulkWrite(ctx, held)
}

// writeOneByOne upserts each document of a chunk that failed, dead-lettering those whose own
// content makes them fail.
func (b *Backfill) writeOneByOne(ctx context.Context, chunk []copied, cnt *batchCounts) ([]copied, error) {
	var written []copied
	for _, it := range chunk {
		for attempt := 0; ; attempt++ {
			err := b.cfg.New.Upsert(ctx, it.op.Doc)
			if err == nil {
				written = append(written, it)
				cnt.copied++
				cnt.bytes += int64(it.size)
				break
			}
			if docSpecific(err) {
				if err := b.deadLetter(ctx, it.key, "write", err); err != nil {
					return written, err
				}
				cnt.dead++
				break
			}
			cnt.errors++
			if err := sleep(ctx, backoff(attempt)); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// docSpecific reports a write error that the documents themselves cause, and that a retry of
// the same documents would meet again.
func docSpecific(err error) bool {
	if errors.Is(err, adapters.ErrItemTooLarge) || errors.Is(err, adapters.ErrUnsupportedValue) || errors.Is(err, adapters.ErrKeyMissing) {
		return true
	}
	var we mongo.WriteException
	var bwe mongo.BulkWriteException
	if errors.As(err, &we) && len(we.WriteErrors) > 0 || errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		return true
	}
	var ce interface{ ErrorCode() string }
	return errors.As(err, &ce) && ce.ErrorCode() == "ValidationException"
}

// recheck is the interplay rule: after a batch landed, read its keys again from the source and
// converge every key whose document differs from the one the batch copied, or is gone. It
// returns how many keys it converged.
func (b *Backfill) recheck(ctx context.Context, h *held, written []copied) (int, error) {
	now, err := b.reread(ctx, h, written)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, it := range written {
		cur, ok := now[adapters.KeyString(it.key)]
		if ok && bytes.Equal(cur, it.src) {
			continue
		}
		if err := b.reconverge(ctx, it.key); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// reread returns the source documents of written's keys as they are now, by KeyString. For a
// MongoDB source it is one range query over [first, last] of the batch (its keys are sorted and
// of one type class; $in would be a full scan on FerretDB); for another store a BatchGet.
func (b *Backfill) reread(ctx context.Context, h *held, written []copied) (map[string][]byte, error) {
	out := make(map[string][]byte, len(written))
	for attempt := 0; ; attempt++ {
		err := b.rereadOnce(ctx, h, written, out)
		if err == nil {
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		b.m.errors.WithLabelValues("read").Inc()
		b.log.Warn("re-reading a batch from the source; retrying", "partition", h.part.Index, "err", err)
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return nil, err
		}
	}
}

func (b *Backfill) rereadOnce(ctx context.Context, h *held, written []copied, out map[string][]byte) error {
	coll := collectionOf(b.cfg.Old)
	if coll == nil || h.part.Class == "" {
		keys := make([]adapters.Key, len(written))
		for i, it := range written {
			keys[i] = it.key
		}
		got, err := b.cfg.Old.BatchGet(ctx, keys)
		if err != nil {
			return err
		}
		for ks, d := range got {
			raw, err := bson.Marshal(d)
			if err != nil {
				return err
			}
			out[ks] = raw
		}
		return nil
	}
	kf := b.keyField()
	filter := bson.D{{Key: kf, Value: bson.D{{Key: "$gte", Value: written[0].key}, {Key: "$lte", Value: written[len(written)-1].key}}}}
	o := options.Find().SetSort(bson.D{{Key: kf, Value: 1}}).SetBatchSize(int32(min(len(written)+1, 1<<20)))
	if kf != "_id" {
		o.SetProjection(bson.D{{Key: "_id", Value: 0}}) // as MongoStore reads it
	}
	cur, err := coll.Find(ctx, filter, o)
	if err != nil {
		return err
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var d bson.D
		if err := cur.Decode(&d); err != nil {
			return err
		}
		k, err := b.cfg.Old.KeyOf(d)
		if err != nil {
			continue
		}
		raw, err := bson.Marshal(d)
		if err != nil {
			return err
		}
		out[adapters.KeyString(k)] = raw
	}
	return cur.Err()
}

// reconverge converges one key, retrying failures (the stores unreachable) until ctx ends.
func (b *Backfill) reconverge(ctx context.Context, key adapters.Key) error {
	for attempt := 0; ; attempt++ {
		err := b.cfg.Reconverge(ctx, key)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.m.errors.WithLabelValues("reconverge").Inc()
		b.log.Warn("converging a key again after its batch; retrying", "key", adapters.KeyString(key), "err", err)
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}
