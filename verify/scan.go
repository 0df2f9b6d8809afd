package verify

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// pair is one key to compare: its old and new documents (nil: absent).
type pair struct {
	key      adapters.Key
	old, cur bson.D
}

// batchResult is what one batch of a task compared (or several: a merge's since its last
// checkpoint, a join's buckets), for the task's checkpoint.
type batchResult struct {
	compared, oldDocs, newDocs int64
	found                      catalog.VerifyCounts
}

func (r *batchResult) add(o batchResult) {
	r.compared += o.compared
	r.oldDocs += o.oldDocs
	r.newDocs += o.newDocs
	r.found.AddAll(o.found)
}

// addTo adds r to a lease's counters.
func (r batchResult) addTo(l *catalog.VerifyLease) {
	l.Compared += r.compared
	l.OldDocs += r.oldDocs
	l.NewDocs += r.newDocs
	l.Found.AddAll(r.found)
}

// process works on a claimed task until it is done, lost or fails, and lets it go.
func (v *verifier) process(ctx context.Context, run catalog.VerifyRun, h *held) error {
	var err error
	switch h.task.Store {
	case catalog.StoreOld:
		err = v.scanOld(ctx, run, h)
	case catalog.StoreNew:
		err = v.scanNew(ctx, run, h)
	case catalog.StoreBoth:
		err = v.merge(ctx, run, h)
	case catalog.StoreRecheck:
		err = v.recheck(ctx, run, h)
	case catalog.StoreJoin:
		err = v.join(ctx, run, h)
	default:
		err = fmt.Errorf("task %s reads an unknown store %q", h.task.ID, h.task.Store)
	}
	if err != nil {
		if err == errLeaseLost {
			v.drop(h)
		}
		return err // the caller releases h
	}
	if err := v.save(ctx, h, func(l *catalog.VerifyLease) { l.Done, l.Error = true, "" }); err != nil {
		if err == errLeaseLost {
			v.drop(h)
		}
		return err
	}
	v.drop(h)
	return nil
}

// scanOptions resumes a scan after the task's checkpoint.
func (v *verifier) scanOptions(h *held) adapters.ScanOptions {
	o := adapters.ScanOptions{Batch: v.cfg.Batch}
	h.mu.Lock()
	if h.lease.HasAfter {
		o.After = h.lease.After
	}
	h.mu.Unlock()
	return o
}

// scanOld compares a partition of the old store: each batch's keys are looked up in the new
// store with one BatchGet.
func (v *verifier) scanOld(ctx context.Context, run catalog.VerifyRun, h *held) error {
	err := v.cfg.Old.Scan(ctx, partitionOf(h.task), v.scanOptions(h), func(docs []bson.D) error {
		if err := v.wait(ctx, len(docs)); err != nil {
			return err
		}
		keys, byKey := v.keysOf(v.cfg.Old, passOld, docs)
		if len(keys) == 0 {
			return nil
		}
		got, err := v.cfg.New.BatchGet(ctx, keys)
		if err != nil {
			return fmt.Errorf("reading %d keys from the new store: %w", len(keys), err)
		}
		pairs := make([]pair, len(keys))
		for i, k := range keys {
			pairs[i] = pair{key: k, old: byKey[i], cur: got[adapters.KeyString(k)]}
		}
		res, err := v.compare(ctx, run, h, pairs, false)
		if err != nil {
			return err
		}
		res.compared, res.oldDocs, res.newDocs = int64(len(keys)), int64(len(docs)), int64(len(got))
		return v.checkpoint(ctx, h, keys[len(keys)-1], res)
	})
	if err != nil {
		return fmt.Errorf("scanning the old store: %w", err)
	}
	return nil
}

// scanNew looks a partition of the new store up in the old store: the keys the old store
// lacks are extra. The keys it has were compared by the old store's scan.
func (v *verifier) scanNew(ctx context.Context, run catalog.VerifyRun, h *held) error {
	err := v.cfg.New.Scan(ctx, partitionOf(h.task), v.scanOptions(h), func(docs []bson.D) error {
		if err := v.wait(ctx, len(docs)); err != nil {
			return err
		}
		keys, byKey := v.keysOf(v.cfg.New, passNew, docs)
		if len(keys) == 0 {
			return nil
		}
		have, err := v.cfg.Old.BatchGet(ctx, keys)
		if err != nil {
			return fmt.Errorf("reading %d keys from the old store: %w", len(keys), err)
		}
		var pairs []pair
		for i, k := range keys {
			if _, ok := have[adapters.KeyString(k)]; !ok {
				pairs = append(pairs, pair{key: k, cur: byKey[i]})
			}
		}
		res, err := v.compare(ctx, run, h, pairs, false)
		if err != nil {
			return err
		}
		res.compared, res.newDocs, res.oldDocs = int64(len(pairs)), int64(len(docs)), int64(len(have))
		return v.checkpoint(ctx, h, keys[len(keys)-1], res)
	})
	if err != nil {
		return fmt.Errorf("scanning the new store: %w", err)
	}
	return nil
}

// keysOf returns the keys of docs with the documents in the same order; a document without a
// readable key is counted and logged, and left out.
func (v *verifier) keysOf(s adapters.Store, p pass, docs []bson.D) ([]adapters.Key, []bson.D) {
	keys := make([]adapters.Key, 0, len(docs))
	out := make([]bson.D, 0, len(docs))
	for _, d := range docs {
		k, err := s.KeyOf(d)
		if err != nil {
			v.keyErrors.Add(1)
			v.log.Warn("verification error: a document has no readable key", "store", string(p), "err", err, "fields", len(d))
			continue
		}
		keys = append(keys, k)
		out = append(out, d)
	}
	if v.cfg.afterRead != nil {
		v.cfg.afterRead(p, keys)
	}
	return keys, out
}

// compare classifies each pair and records the differences: first sightings as pending, and,
// on a recheck, each as pending, confirmed or resolved.
func (v *verifier) compare(ctx context.Context, run catalog.VerifyRun, h *held, pairs []pair, recheck bool) (batchResult, error) {
	var res batchResult
	for _, p := range pairs {
		o := v.classify(p.old, p.cur)
		if err := v.note(ctx, run, h.task.Generation, p.key, o, recheck); err != nil {
			return res, err
		}
		if !o.same() {
			res.found.Add(o.kind, 1)
		}
	}
	v.cfg.Metrics.compared.WithLabelValues(v.cfg.Migration, h.task.Store).Add(float64(len(pairs)))
	return res, nil
}

// checkpoint saves the task's position after a batch together with the batch's counters.
func (v *verifier) checkpoint(ctx context.Context, h *held, after adapters.Key, res batchResult) error {
	err := v.save(ctx, h, func(l *catalog.VerifyLease) {
		l.After, l.HasAfter, l.AfterString = after, true, adapters.KeyString(after)
		res.addTo(l)
	})
	if err != nil {
		return err
	}
	v.progress(ctx, map[string]int64{"keys": res.compared})
	if v.cfg.afterBatch != nil {
		v.cfg.afterBatch()
	}
	return nil
}

// progress adds counters to the catalog's progress of the verify path.
func (v *verifier) progress(ctx context.Context, deltas map[string]int64) {
	if err := v.cfg.Catalog.AddProgress(ctx, v.cfg.Migration, ProgressPath, deltas); err != nil && ctx.Err() == nil {
		v.log.Warn("reporting verification progress failed", "err", err)
	}
}

// note records what a comparison of key found in generation gen. A difference seen for the
// first time (or again after it was resolved) is pending from now. On a recheck, a difference
// first seen in an earlier generation at least Settle ago is confirmed (counted, recorded in
// the legacy mismatch list, repaired with Repair); one that is gone is resolved.
func (v *verifier) note(ctx context.Context, run catalog.VerifyRun, gen int64, key adapters.Key, o outcome, recheck bool) error {
	cat := v.cfg.Catalog
	ks := adapters.KeyString(key)
	if o.same() && !recheck {
		return nil // a first comparison that agrees: nothing to record or to clear
	}
	// The record is read, changed and written back: one key's notes must not interleave, or
	// the rolling sample's "still pending" overwrites a recheck's "confirmed" and the next
	// recheck confirms (and reports) the key a second time.
	mu := &v.noteLocks[keyStripe(ks)]
	mu.Lock()
	defer mu.Unlock()
	prev, ok, err := cat.VerifyMismatchOf(ctx, run.Migration, run.RunID, ks)
	if err != nil {
		return err
	}
	open := ok && prev.State != catalog.MismatchResolved
	now := time.Now().UTC()
	if o.same() {
		if !open {
			return nil
		}
		prev.State, prev.LastSeen, prev.Generation = catalog.MismatchResolved, now, gen
		v.log.Debug("verification difference gone on recheck", "key", ks)
		return cat.SaveVerifyMismatch(ctx, prev)
	}
	m := catalog.VerifyMismatch{
		Migration: run.Migration, RunID: run.RunID, Key: key, KeyString: ks, Kind: o.kind, State: catalog.MismatchPending,
		FirstSeen: now, LastSeen: now, Generation: gen, Detail: o.detail, Fields: fieldRecords(o.fields),
	}
	if ok {
		m.ConfirmedOnce = prev.ConfirmedOnce
	}
	if open {
		m.FirstSeen, m.Repaired = prev.FirstSeen, prev.Repaired
		if prev.State == catalog.MismatchConfirmed {
			m.State = catalog.MismatchConfirmed
		}
		if recheck && prev.Generation < gen && now.Sub(prev.FirstSeen) >= run.Settle {
			m.State = catalog.MismatchConfirmed
		}
	}
	if !open || m.Kind != prev.Kind {
		v.cfg.Metrics.found.WithLabelValues(v.cfg.Migration, string(o.kind)).Inc()
	}
	if err := cat.SaveVerifyMismatch(ctx, m); err != nil {
		return err
	}
	if m.State == catalog.MismatchConfirmed && (!open || prev.State != catalog.MismatchConfirmed) {
		v.confirmed(ctx, m, o)
	}
	return nil
}

// keyStripe picks the lock of noteLocks a key's notes take.
func keyStripe(ks string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(ks))
	return int(h.Sum32() % noteStripes)
}

// confirmed reports a newly confirmed mismatch: a log line naming the paths only (values are
// user data, logged at debug), the legacy mismatch record, and, with Repair, a repair.
func (v *verifier) confirmed(ctx context.Context, m catalog.VerifyMismatch, o outcome) {
	paths := make([]string, len(m.Fields))
	for i, f := range m.Fields {
		paths[i] = f.Path
	}
	v.log.Warn("verification mismatch", "key", m.KeyString, "kind", string(m.Kind), "paths", paths, "first_seen", m.FirstSeen)
	v.log.Debug("verification mismatch: the difference, logged at debug only: it is user data", "key", m.KeyString, "diff", o.diff)
	errs := int64(0)
	if m.Kind == catalog.KindUntransformable {
		errs = 1
	}
	v.progress(ctx, map[string]int64{"mismatches": 1, "errors": errs})
	id, recErr := v.cfg.Catalog.RecordMismatch(ctx, catalog.Mismatch{Migration: m.Migration, Key: m.Key, Source: SourceVerify, Diff: o.diff})
	if recErr != nil {
		v.log.Error("recording a verification mismatch failed", "key", m.KeyString, "err", recErr)
	}
	if v.cfg.Repair == nil || m.Kind == catalog.KindUntransformable || m.Kind == catalog.KindInvariantBroken || m.Kind == catalog.KindIndexMissing {
		return
	}
	if err := v.repairs.Wait(ctx); err != nil {
		return
	}
	if err := v.cfg.Repair(ctx, m.Key); err != nil {
		v.repairFailed.Add(1)
		v.cfg.Metrics.repairs.WithLabelValues(v.cfg.Migration, "failed").Inc()
		v.log.Warn("repairing a verification mismatch failed", "key", m.KeyString, "err", err)
		return
	}
	v.repaired.Add(1)
	v.cfg.Metrics.repairs.WithLabelValues(v.cfg.Migration, "repaired").Inc()
	m.Repaired = time.Now().UTC()
	if err := v.cfg.Catalog.SaveVerifyMismatch(ctx, m); err != nil {
		v.log.Error("marking a verification mismatch repaired failed", "key", m.KeyString, "err", err)
	}
	if recErr == nil {
		if err := v.cfg.Catalog.MarkRepaired(ctx, id); err != nil {
			v.log.Error("marking a verification mismatch repaired failed", "key", m.KeyString, "err", err)
		}
	}
}

// wait takes n documents from the full pass's rate limiter.
func (v *verifier) wait(ctx context.Context, n int) error {
	return waitN(ctx, v.limiter, n)
}
