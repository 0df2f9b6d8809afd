package verify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
)

// kind is what a comparison of one key found.
type kind int

const (
	same            kind = iota // new holds transform(old), or neither store has the key
	missing                     // old has the key, new does not
	extra                       // new has the key, old does not
	differing                   // both have it, new's fields are not transform(old)'s
	untransformable             // old's document cannot be transformed or held by new
)

// outcome is the result of comparing one key.
type outcome struct {
	kind kind
	diff []string // the Mismatch's Diff
}

// tally counts a batch's results, for the summary and progress.
type tally struct{ keys, keyErrors, mismatches, untransformable int64 }

// checkOld compares a batch of old documents with what the new store holds under their keys;
// differences are rechecked before they count.
func (r *run) checkOld(ctx context.Context, docs []bson.D) error {
	var t tally
	keys := make([]adapters.Key, 0, len(docs))
	byKey := make([]bson.D, 0, len(docs))
	for _, d := range docs {
		k, err := r.cfg.Old.KeyOf(d)
		if err != nil {
			t.keyErrors++
			r.keyError(passOld, d, err)
			continue
		}
		keys = append(keys, k)
		byKey = append(byKey, d)
	}
	if r.cfg.afterRead != nil {
		r.cfg.afterRead(passOld, keys)
	}
	if len(keys) == 0 {
		r.count(ctx, t)
		return nil
	}
	got, err := r.cfg.New.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("reading %d keys from the new store: %w", len(keys), err)
	}
	var suspects []adapters.Key
	for i, k := range keys {
		if r.classify(byKey[i], got[adapters.KeyString(k)]).kind != same {
			suspects = append(suspects, k)
		}
	}
	t.keys = int64(len(keys))
	err = r.recheck(ctx, suspects, &t)
	r.count(ctx, t)
	return err
}

// checkNew looks up a batch of new documents' keys in the old store: the keys it lacks are
// extra (after a recheck). The keys it has were compared by the old store's scan.
func (r *run) checkNew(ctx context.Context, docs []bson.D) error {
	var t tally
	keys := make([]adapters.Key, 0, len(docs))
	for _, d := range docs {
		k, err := r.cfg.New.KeyOf(d)
		if err != nil {
			t.keyErrors++
			r.keyError(passNew, d, err)
			continue
		}
		keys = append(keys, k)
	}
	if r.cfg.afterRead != nil {
		r.cfg.afterRead(passNew, keys)
	}
	if len(keys) == 0 {
		r.count(ctx, t)
		return nil
	}
	have, err := r.cfg.Old.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("reading %d keys from the old store: %w", len(keys), err)
	}
	var suspects []adapters.Key
	for _, k := range keys {
		if _, ok := have[adapters.KeyString(k)]; !ok {
			suspects = append(suspects, k)
		}
	}
	t.keys = int64(len(suspects))
	err = r.recheck(ctx, suspects, &t)
	r.count(ctx, t)
	return err
}

// recheck reads the keys that differed again, after Settle, and confirms those that still
// differ. It reads old, then new, then old again: a key whose old document changed between
// the two old reads is taken as agreeing if new holds the transform of either, since a writer
// that converges writes old first and new after.
func (r *run) recheck(ctx context.Context, keys []adapters.Key, t *tally) error {
	if len(keys) == 0 {
		return nil
	}
	r.mu.Lock()
	r.sum.Rechecked += int64(len(keys))
	r.mu.Unlock()
	if r.cfg.Settle > 0 {
		timer := time.NewTimer(r.cfg.Settle)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
	}
	if r.cfg.beforeRecheck != nil {
		r.cfg.beforeRecheck(keys)
	}
	old1, err := r.cfg.Old.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("rechecking %d keys: reading the old store: %w", len(keys), err)
	}
	cur, err := r.cfg.New.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("rechecking %d keys: reading the new store: %w", len(keys), err)
	}
	old2, err := r.cfg.Old.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("rechecking %d keys: reading the old store: %w", len(keys), err)
	}
	for _, k := range keys {
		ks := adapters.KeyString(k)
		o := r.classify(old1[ks], cur[ks])
		if o.kind != same && !sameDoc(old1[ks], old2[ks]) {
			o = r.classify(old2[ks], cur[ks]) // the latest state, if it differs too
		}
		if o.kind == same {
			r.log.Debug("difference gone on recheck (a write raced the read)", "key", ks)
			continue
		}
		if r.confirm(ctx, k, ks, o) {
			t.mismatches++
			if o.kind == untransformable {
				t.untransformable++
			}
		}
	}
	return nil
}

// classify compares old (nil: absent) with new (nil: absent).
func (r *run) classify(old, cur bson.D) outcome {
	switch {
	case old == nil && cur == nil:
		return outcome{kind: same}
	case old == nil:
		return outcome{extra, []string{"extra in the new store: the old store has no document with this key"}}
	}
	want, err := r.cfg.Forward(old)
	if err != nil {
		return outcome{untransformable, []string{"transform failed: " + err.Error()}}
	}
	if want, err = r.cfg.New.Normalize(want); err != nil {
		return outcome{untransformable, []string{"the new store cannot hold the transformed document: " + err.Error()}}
	}
	switch {
	case cur == nil:
		return outcome{missing, []string{"missing in the new store"}}
	case transform.Equal(want, cur):
		return outcome{kind: same}
	}
	return outcome{differing, transform.Diff(want, cur)}
}

// confirm counts, records and (with Repair) repairs a mismatch; it reports false for a key
// already confirmed in this run (both scans can come across one key).
func (r *run) confirm(ctx context.Context, key adapters.Key, ks string, o outcome) bool {
	r.mu.Lock()
	if r.confirmed[ks] {
		r.mu.Unlock()
		return false
	}
	r.confirmed[ks] = true
	r.sum.Mismatches++
	switch o.kind {
	case missing:
		r.sum.Missing++
	case extra:
		r.sum.Extra++
	case differing:
		r.sum.Differing++
	case untransformable:
		r.sum.Untransformable++
		r.sum.Errors++
	}
	r.mu.Unlock()
	r.sample(ks + ": " + strings.Join(o.diff, "; "))
	r.log.Warn("verification mismatch", "key", ks, "paths", transform.DiffPaths(o.diff))
	r.log.Debug("verification mismatch: the difference, logged at debug only: it is user data", "key", ks, "diff", o.diff)

	id, recErr := r.cfg.Catalog.RecordMismatch(ctx, catalog.Mismatch{
		Migration: r.cfg.Migration, Key: key, Source: SourceVerify, Diff: o.diff,
	})
	if recErr != nil {
		r.log.Error("recording a verification mismatch failed", "key", ks, "err", recErr)
	}
	if r.cfg.Repair == nil || o.kind == untransformable {
		return true
	}
	if err := r.cfg.Repair(ctx, key); err != nil {
		r.mu.Lock()
		r.sum.RepairFailed++
		r.mu.Unlock()
		r.log.Warn("repairing a verification mismatch failed", "key", ks, "err", err)
		return true
	}
	r.mu.Lock()
	r.sum.Repaired++
	r.mu.Unlock()
	if recErr == nil {
		if err := r.cfg.Catalog.MarkRepaired(ctx, id); err != nil {
			r.log.Error("marking a verification mismatch repaired failed", "key", ks, "err", err)
		}
	}
	return true
}

// keyError counts a document whose key cannot be read: it cannot be compared.
func (r *run) keyError(p pass, doc bson.D, err error) {
	line := fmt.Sprintf("a document of the %s store has no readable key: %v", p, err)
	r.sample(line)
	r.log.Warn("verification error", "store", string(p), "err", err, "fields", len(doc))
}

func sameDoc(a, b bson.D) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return transform.Equal(a, b)
}
