package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// The join plan, for stores with no common key order (MongoDB → DynamoDB): the full pass is
// one task that scans every partition of both stores once, on Concurrency goroutines, and
// spills a record per document (its key, a digest of what the comparison sees, flags) into
// bucket files on local disk by the hash of its key (spill.go); then joins the buckets one
// pair at a time: a key both sides hold with the same digest and no flag agrees; every other
// key (one side only, digests that differ, an invariant that does not hold, a document the
// transform rejects) is read again from both stores, a batch at a time, and compared in full,
// as the look-up plan compares every key. Each store is read once; the look-ups are for the
// differences only. Memory is a bucket (Config.Buckets is chosen for about joinBucketDocs
// documents each) and a buffer per file.
//
// The task's checkpoint (catalog.VerifyJoin, saved every CheckpointEvery) records each part's
// position with the files' sizes at that moment, under one lock, so a resume cuts the files
// back and scans on from the positions: nothing is lost or spilled twice. Joined buckets are
// counted in the lease with the checkpoint. A resume on another host, or one that finds the
// files gone or damaged, scans again from the start (the join's counters start again; a
// difference it had recorded is recorded again, as the same pending record). One process
// holds the task; processes sharing the run share its rechecks (Plan lookup splits the full
// pass into tasks that processes share, at twice the reads).

// joinBucketDocs is the documents per bucket the join aims at.
const joinBucketDocs = 10_000

// The bounds of the buckets the join chooses.
const (
	minJoinBuckets = 16
	maxJoinBuckets = 1024
)

// joining says whether the full pass is a join.
func (v *verifier) joining() bool {
	switch v.cfg.Plan {
	case PlanJoin:
		return true
	case PlanAuto:
		return !v.merging()
	}
	return false
}

// joinTask is the full pass of the join plan.
func joinTask(oldParts, newParts []adapters.Partition) catalog.VerifyTask {
	t := catalog.VerifyTask{Store: catalog.StoreJoin}
	for _, set := range []struct {
		store string
		parts []adapters.Partition
	}{{catalog.StoreOld, oldParts}, {catalog.StoreNew, newParts}} {
		for _, p := range set.parts {
			t.Parts = append(t.Parts, catalog.VerifyPart{Store: set.store, Min: p.Min, Max: p.Max, Segment: p.Segment, Segments: p.Segments})
		}
	}
	return t
}

// join works on the join task until every bucket is joined.
func (v *verifier) join(ctx context.Context, run catalog.VerifyRun, h *held) error {
	j, sp, err := v.openJoin(ctx, run, h)
	if err != nil {
		return err
	}
	if sp == nil {
		return nil // every bucket was joined before a crash
	}
	if !j.Scanned {
		if err := v.joinScan(ctx, h, j, sp); err != nil {
			return v.joinFailed(ctx, h, err)
		}
	}
	if err := v.joinBuckets(ctx, run, h, j, sp); err != nil {
		return v.joinFailed(ctx, h, err)
	}
	v.removeSpill(j.Dir)
	return nil
}

// removeSpill removes a finished join's directory and, when they are left empty, the run's and
// the migration's above it (tandem-verify/MIGRATION/RUN/attempt-N).
func (v *verifier) removeSpill(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		v.log.Warn("removing the verification's spill files", "dir", dir, "err", err)
		return
	}
	for range 3 {
		dir = filepath.Dir(dir)
		if os.Remove(dir) != nil { // not empty (another run's files), or gone
			return
		}
	}
}

// joinFailed makes a damaged spill a reason to start again: the checkpoint is dropped, so
// that the next attempt scans both stores again instead of reading the same damage.
func (v *verifier) joinFailed(ctx context.Context, h *held, err error) error {
	if !errors.Is(err, errSpillDamaged) {
		return err
	}
	v.log.Warn("verification join: the spill is damaged: the next attempt scans again", "task", h.task.ID, "err", err)
	serr := v.save(context.WithoutCancel(ctx), h, func(l *catalog.VerifyLease) {
		l.Join = nil
		l.Compared, l.OldDocs, l.NewDocs, l.Found = 0, 0, 0, catalog.VerifyCounts{}
	})
	if serr != nil {
		return errors.Join(err, serr)
	}
	return fmt.Errorf("%w (the next attempt scans again)", err)
}

// openJoin resumes the task's spill, or starts a new one (saving the fresh checkpoint) when
// there is none, it is on another host, or its files are gone or damaged. sp is nil when
// every bucket is already joined.
func (v *verifier) openJoin(ctx context.Context, run catalog.VerifyRun, h *held) (*catalog.VerifyJoin, *spill, error) {
	h.mu.Lock()
	prev := h.lease.Join
	h.mu.Unlock()
	host, _ := os.Hostname()
	if prev != nil && prev.Scanned && prev.Joined >= prev.Buckets {
		return prev, nil, nil
	}
	if prev != nil {
		if prev.Host == host {
			sp, err := openSpill(prev.Dir, prev.Buckets, prev.Sizes)
			if err == nil {
				j := cloneJoin(prev)
				v.log.Info("verification join resumed", "task", h.task.ID, "dir", j.Dir, "scanned", j.Scanned, "joined", j.Joined)
				return j, sp, nil
			}
			v.log.Warn("verification join: the spill files of the interrupted attempt cannot be used: scanning again", "task", h.task.ID, "err", err)
		} else {
			v.log.Warn("verification join: the interrupted attempt's spill files are on another host: scanning again", "task", h.task.ID, "host", prev.Host)
		}
	}
	buckets := v.cfg.Buckets
	if buckets <= 0 {
		buckets = v.joinBuckets0(ctx, run)
	}
	runDir := filepath.Join(v.cfg.SpillDir, "tandem-verify", safeName(run.Migration), run.RunID)
	j := &catalog.VerifyJoin{Host: host, Dir: filepath.Join(runDir, fmt.Sprintf("attempt-%d", h.attempt)),
		Buckets: buckets, Sizes: make([]int64, 2*buckets), Parts: make([]catalog.VerifyJoinPart, len(h.task.Parts))}
	if err := os.RemoveAll(runDir); err != nil { // earlier attempts' files on this host
		return nil, nil, fmt.Errorf("emptying the spill directory %s: %w", runDir, err)
	}
	sp, err := openSpill(j.Dir, buckets, nil)
	if err != nil {
		return nil, nil, err
	}
	fresh := cloneJoin(j)
	err = v.save(ctx, h, func(l *catalog.VerifyLease) {
		l.Join = fresh
		l.Compared, l.OldDocs, l.NewDocs, l.Found = 0, 0, 0, catalog.VerifyCounts{}
	})
	if err != nil {
		return nil, nil, err
	}
	return j, sp, nil
}

// joinBuckets0 chooses the buckets from the stores' estimated sizes (the old store's as the
// run recorded it at its start).
func (v *verifier) joinBuckets0(ctx context.Context, run catalog.VerifyRun) int {
	n := run.Total
	if c, err := v.cfg.New.EstimateCount(ctx); err == nil {
		n = max(n, c)
	}
	return int(min(max((n+joinBucketDocs-1)/joinBucketDocs, minJoinBuckets), maxJoinBuckets))
}

// joinScan scans the parts not yet done, Concurrency at a time, checkpointing every
// CheckpointEvery, and saves the checkpoint that says every part is scanned.
func (v *verifier) joinScan(ctx context.Context, h *held, j *catalog.VerifyJoin, sp *spill) error {
	var cpMu sync.Mutex // one checkpoint at a time, so that none saves an older state after a newer
	checkpoint := func(ctx context.Context) error {
		cpMu.Lock()
		defer cpMu.Unlock()
		var snap *catalog.VerifyJoin
		if err := sp.checkpoint(func(sizes []int64) {
			j.Sizes = sizes
			snap = cloneJoin(j)
		}); err != nil {
			return err
		}
		if err := v.save(ctx, h, func(l *catalog.VerifyLease) { l.Join = snap }); err != nil {
			return err
		}
		if v.cfg.afterBatch != nil {
			v.cfg.afterBatch()
		}
		return nil
	}
	scan, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan int, len(h.task.Parts))
	sp.mu.Lock()
	for i := range h.task.Parts {
		if !j.Parts[i].Done {
			queue <- i
		}
	}
	sp.mu.Unlock()
	close(queue)
	var wg sync.WaitGroup
	for range v.cfg.Concurrency {
		wg.Go(func() {
			for i := range queue {
				if err := v.joinScanPart(scan, h, j, sp, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	stopTicks := make(chan struct{})
	ticks := make(chan struct{})
	go func() {
		defer close(ticks)
		t := time.NewTicker(v.cfg.CheckpointEvery)
		defer t.Stop()
		for {
			select {
			case <-scan.Done():
				return
			case <-stopTicks:
				return
			case <-t.C:
				if err := checkpoint(scan); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stopTicks)
	<-ticks
	if err := context.Cause(scan); err != nil {
		return err // a scan or a checkpoint failed, or ctx ended
	}
	sp.mu.Lock()
	j.Scanned = true
	sp.mu.Unlock()
	return checkpoint(ctx)
}

// joinScanPart scans part i from its position, spilling each batch's records with the
// position after them.
func (v *verifier) joinScanPart(ctx context.Context, h *held, j *catalog.VerifyJoin, sp *spill, i int) error {
	part := h.task.Parts[i]
	store, side, p := v.cfg.Old, sideOld, passOld
	if part.Store == catalog.StoreNew {
		store, side, p = v.cfg.New, sideNew, passNew
	}
	opts := adapters.ScanOptions{Batch: v.cfg.Batch}
	sp.mu.Lock()
	if j.Parts[i].HasAfter {
		opts.After = j.Parts[i].After
	}
	sp.mu.Unlock()
	partition := adapters.Partition{Min: part.Min, Max: part.Max, Segment: part.Segment, Segments: part.Segments}
	err := store.Scan(ctx, partition, opts, func(docs []bson.D) error {
		if err := v.wait(ctx, len(docs)); err != nil {
			return err
		}
		keys, kept := v.keysOf(store, p, docs)
		recs := make([]spillRecord, 0, len(keys))
		for k, key := range keys {
			r, err := v.record(side, key, kept[k])
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return sp.add(side, recs, func() {
			jp := &j.Parts[i]
			jp.Docs += int64(len(docs))
			if len(keys) > 0 {
				last := keys[len(keys)-1]
				jp.After, jp.HasAfter, jp.AfterString = last, true, adapters.KeyString(last)
			}
		})
	})
	if err != nil {
		return fmt.Errorf("scanning the %s store (join, part %d): %w", part.Store, i, err)
	}
	sp.mu.Lock()
	j.Parts[i].Done = true
	sp.mu.Unlock()
	return nil
}

// record is one document's spill record: the old store's digest is that of
// Normalize(Forward(old)), the new store's that of the document; a document the transform
// rejects, or whose invariants do not hold, is flagged, and compared in full.
func (v *verifier) record(side int, key adapters.Key, doc bson.D) (spillRecord, error) {
	kb, err := bson.Marshal(bson.D{{Key: "k", Value: key}})
	if err != nil {
		return spillRecord{}, fmt.Errorf("encoding the key %s for the spill: %w", adapters.KeyString(key), err)
	}
	r := spillRecord{ks: adapters.KeyString(key), key: kb}
	if side == sideOld {
		want, err := v.cfg.Forward(doc)
		if err == nil {
			want, err = v.cfg.New.Normalize(want)
		}
		if err != nil {
			r.flags |= flagUntransformable
			return r, nil
		}
		doc = want
	} else if !v.checkInvariants(doc).same() {
		r.flags |= flagInvariant
	}
	sum, ok := digest(doc)
	if !ok {
		r.flags |= flagNoDigest
	}
	r.digest = sum
	return r, nil
}

// joinBuckets joins the buckets left, saving the checkpoint with their counters every
// CheckpointEvery and after the last.
func (v *verifier) joinBuckets(ctx context.Context, run catalog.VerifyRun, h *held, j *catalog.VerifyJoin, sp *spill) error {
	var acc batchResult
	last := time.Now()
	for b := j.Joined; b < j.Buckets; b++ {
		res, err := v.joinBucket(ctx, run, h, sp, b)
		if err != nil {
			return err
		}
		acc.add(res)
		j.Joined = b + 1
		if time.Since(last) < v.cfg.CheckpointEvery && j.Joined < j.Buckets {
			continue
		}
		snap := cloneJoin(j)
		err = v.save(ctx, h, func(l *catalog.VerifyLease) {
			l.Join = snap
			acc.addTo(l)
		})
		if err != nil {
			return err
		}
		v.progress(ctx, map[string]int64{"keys": acc.compared})
		if v.cfg.afterBatch != nil {
			v.cfg.afterBatch()
		}
		acc, last = batchResult{}, time.Now()
	}
	return nil
}

// joinBucket joins bucket b of both sides: the keys that agree by digest are counted; the
// others are read from both stores and compared in full.
func (v *verifier) joinBucket(ctx context.Context, run catalog.VerifyRun, h *held, sp *spill, b int) (batchResult, error) {
	var res batchResult
	olds := map[string]spillRecord{}
	err := sp.read(sideOld, b, func(r spillRecord) error {
		res.oldDocs++
		olds[r.ks] = r
		return nil
	})
	if err != nil {
		return res, err
	}
	var suspects [][]byte // keys (BSON) to compare in full
	err = sp.read(sideNew, b, func(r spillRecord) error {
		res.newDocs++
		o, ok := olds[r.ks]
		if !ok {
			res.compared++
			suspects = append(suspects, r.key)
			return nil
		}
		delete(olds, r.ks)
		res.compared++
		if o.flags|r.flags != 0 || o.digest != r.digest {
			suspects = append(suspects, o.key)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	for _, o := range olds {
		res.compared++
		suspects = append(suspects, o.key)
	}
	v.cfg.Metrics.compared.WithLabelValues(v.cfg.Migration, catalog.StoreJoin).Add(float64(res.compared - int64(len(suspects))))
	for first := 0; first < len(suspects); first += v.cfg.Batch {
		found, err := v.compareInFull(ctx, run, h, suspects[first:min(first+v.cfg.Batch, len(suspects))])
		if err != nil {
			return res, err
		}
		res.found.AddAll(found)
	}
	return res, nil
}

// compareInFull reads keys from both stores and compares them as the look-up plan does.
func (v *verifier) compareInFull(ctx context.Context, run catalog.VerifyRun, h *held, raw [][]byte) (catalog.VerifyCounts, error) {
	keys := make([]adapters.Key, len(raw))
	for i, kb := range raw {
		var d bson.D
		if err := bson.Unmarshal(kb, &d); err != nil || len(d) != 1 {
			return catalog.VerifyCounts{}, fmt.Errorf("%w: a key that does not decode: %v", errSpillDamaged, err)
		}
		keys[i] = d[0].Value
	}
	if err := v.wait(ctx, 2*len(keys)); err != nil {
		return catalog.VerifyCounts{}, err
	}
	olds, err := v.cfg.Old.BatchGet(ctx, keys)
	if err != nil {
		return catalog.VerifyCounts{}, fmt.Errorf("reading %d keys from the old store: %w", len(keys), err)
	}
	news, err := v.cfg.New.BatchGet(ctx, keys)
	if err != nil {
		return catalog.VerifyCounts{}, fmt.Errorf("reading %d keys from the new store: %w", len(keys), err)
	}
	pairs := make([]pair, len(keys))
	for i, k := range keys {
		ks := adapters.KeyString(k)
		pairs[i] = pair{key: k, old: olds[ks], cur: news[ks]}
	}
	res, err := v.compare(ctx, run, h, pairs, false)
	return res.found, err
}

func cloneJoin(j *catalog.VerifyJoin) *catalog.VerifyJoin {
	c := *j
	c.Sizes = append([]int64(nil), j.Sizes...)
	c.Parts = append([]catalog.VerifyJoinPart(nil), j.Parts...)
	return &c
}

// safeName makes a migration name a directory name.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}
