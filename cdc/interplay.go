package cdc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// Disposition is what a forward tailer does with a changed key while a backfill runs.
type Disposition int

const (
	// ConvergeNow: the copy has passed the key (or will never reach it): converge at once.
	ConvergeNow Disposition = iota
	// LeaveToCopy: the key lies in a partition no process has started to copy, so the copy will
	// read it after the change: converging it now would be work the copy repeats.
	LeaveToCopy
	// AfterBatch: the key is in the batch its partition is writing: converge it after that
	// batch lands, so the batch's older copy cannot land over the converge.
	AfterBatch
)

// Interplay classifies a forward tailer's changes against the backfill (docs/backfill.md).
type Interplay interface {
	// Classify returns a disposition per change, in order.
	Classify(ctx context.Context, changes []Change) ([]Disposition, error)
}

// BackfillCatalog is what BackfillInterplay reads: *catalog.Catalog.
type BackfillCatalog interface {
	BackfillPlan(ctx context.Context, migration string) (catalog.BackfillPlan, error)
	BackfillPartitions(ctx context.Context, migration, planID string) ([]catalog.BackfillPartition, error)
	BackfillLeases(ctx context.Context, migration, planID string) (map[int]catalog.BackfillLease, error)
}

// BackfillInterplay applies the backfill interplay rule from what the backfill saves in the
// catalog — its plan's partitions (key ranges per BSON type class) and each partition's newest
// lease (the checkpoint After, the Pending keys of the batch being written, Done) — so it holds
// whichever process copies. For each change:
//
//   - a delete is converged now: the copy copies what exists and never removes a key from the
//     target, so only a converge removes what an earlier converge may have written;
//   - a key of a partition no process has claimed yet: left to the copy, whose first read of
//     the partition follows its claim, so follows this look at the leases, so follows the change;
//   - a key among the Pending keys of its partition's batch: after the batch lands;
//   - any other key (no plan, a key class or range the plan does not cover, a done partition,
//     behind or beyond a claimed partition's checkpoint): now.
//
// A key beyond the checkpoint of a claimed partition is not left to the copy: the copy may have
// read past it before the change without having announced that batch yet, or its cursor may
// already hold the rest of the partition, and a key that did not exist when the copy read its
// range is in no batch's re-check, so the checkpoint would move past it and nothing would copy
// it (TestConvergenceUnderKills found such inserts lost). Converging it now is always correct:
// the copy's later write of the key is re-checked against the source like any other. Keys whose
// order this code does not know (documents, binaries, dates…) are converged now too.
type BackfillInterplay struct {
	cat       BackfillCatalog
	migration string

	mu    sync.Mutex
	plan  string // plan id whose partitions are cached
	parts []catalog.BackfillPartition
}

// NewBackfillInterplay returns the rule for migration's backfill, read from cat.
func NewBackfillInterplay(cat BackfillCatalog, migration string) *BackfillInterplay {
	return &BackfillInterplay{cat: cat, migration: migration}
}

// Classify implements Interplay: one read of the plan and of the leases per call (the
// partitions are read once per plan).
func (b *BackfillInterplay) Classify(ctx context.Context, changes []Change) ([]Disposition, error) {
	out := make([]Disposition, len(changes))
	plan, err := b.cat.BackfillPlan(ctx, b.migration)
	if errors.Is(err, catalog.ErrNotFound) {
		return out, nil // no backfill: converge everything
	}
	if err != nil {
		return nil, err
	}
	parts, err := b.partitions(ctx, plan.PlanID)
	if err != nil {
		return nil, err
	}
	leases, err := b.cat.BackfillLeases(ctx, b.migration, plan.PlanID)
	if err != nil {
		return nil, err
	}
	for i, c := range changes {
		if c.Op == OpDelete {
			continue
		}
		out[i] = classify(c.Key, parts, leases)
	}
	return out, nil
}

func (b *BackfillInterplay) partitions(ctx context.Context, planID string) ([]catalog.BackfillPartition, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.plan == planID {
		return b.parts, nil
	}
	parts, err := b.cat.BackfillPartitions(ctx, b.migration, planID)
	if err != nil {
		return nil, err
	}
	b.plan, b.parts = planID, parts
	return parts, nil
}

func classify(key adapters.Key, parts []catalog.BackfillPartition, leases map[int]catalog.BackfillLease) Disposition {
	class := keyClass(key)
	if class == "" {
		return ConvergeNow
	}
	for _, p := range parts {
		if p.Class != class || !inRange(key, p.Min, p.Max) {
			continue
		}
		l, claimed := leases[p.Index]
		switch {
		case !claimed:
			return LeaveToCopy
		case pending(key, l.Pending) && !l.Done:
			return AfterBatch
		}
		// Claimed and beyond the checkpoint, behind it, or done: now. A key beyond the
		// checkpoint is not left to the copy, which may have read past it already.
		return ConvergeNow
	}
	return ConvergeNow
}

func pending(key adapters.Key, keys []any) bool {
	ks := adapters.KeyString(key)
	for _, k := range keys {
		if adapters.KeyString(k) == ks {
			return true
		}
	}
	return false
}

// inRange reports whether key is in [min, max) (a nil bound is open); false when the bounds are
// not comparable with it.
func inRange(key, lo, hi any) bool {
	if lo != nil {
		c, ok := compareKeys(key, lo)
		if !ok || c < 0 {
			return false
		}
	}
	if hi != nil {
		c, ok := compareKeys(key, hi)
		if !ok || c >= 0 {
			return false
		}
	}
	return true
}

// keyClass is the backfill plan's class ($type alias) of the key types whose order
// compareKeys knows; "" for the others.
func keyClass(k any) string {
	switch k.(type) {
	case int32, int64, float64:
		return "number"
	case string:
		return "string"
	case bson.ObjectID:
		return "objectId"
	}
	return ""
}

// compareKeys orders two keys of one class as MongoDB does with the simple collation (numbers
// by value, strings by their UTF-8 bytes, ObjectIDs by their bytes); ok is false when they are
// of different classes or of a class it does not know.
func compareKeys(a, b any) (int, bool) {
	if keyClass(a) == "" || keyClass(a) != keyClass(b) {
		return 0, false
	}
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string)), true
	case bson.ObjectID:
		y := b.(bson.ObjectID)
		return bytes.Compare(x[:], y[:]), true
	}
	return compareNumbers(a, b), true
}

func compareNumbers(a, b any) int {
	ai, aInt := asInt(a)
	bi, bInt := asInt(b)
	if aInt && bInt {
		switch {
		case ai < bi:
			return -1
		case ai > bi:
			return 1
		}
		return 0
	}
	af, bf := asFloat(a), asFloat(b)
	switch {
	case af < bf:
		return -1
	case af > bf:
		return 1
	}
	return 0
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int32:
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

func asFloat(v any) float64 {
	switch x := v.(type) {
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("cdc: %T is not a number", v))
}
