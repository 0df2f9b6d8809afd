package verify

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
)

// checkIndexes compares the indexes the spec requires with the new store's, at the end of
// each generation: a missing one is a confirmed mismatch of kind index_missing (its key is
// "index " and the index's description), one that has appeared since is resolved. A store
// that cannot list its indexes is not checked.
func (v *verifier) checkIndexes(ctx context.Context, run catalog.VerifyRun, gen int64) error {
	if len(v.cfg.Indexes) == 0 {
		return nil
	}
	lister, ok := v.cfg.New.(adapters.IndexLister)
	if !ok {
		return nil
	}
	have, err := lister.Indexes(ctx)
	if err != nil {
		return fmt.Errorf("listing the new store's indexes: %w", err)
	}
	_, dynamo := v.cfg.New.(*adapters.DynamoStore)
	now := time.Now().UTC()
	for _, want := range v.cfg.Indexes {
		key := "index " + want.String()
		ks := adapters.KeyString(key)
		prev, exists, err := v.cfg.Catalog.VerifyMismatchOf(ctx, run.Migration, run.RunID, ks)
		if err != nil {
			return err
		}
		found := slices.ContainsFunc(have, func(ix adapters.IndexInfo) bool { return indexMatches(want, ix, dynamo) })
		switch {
		case found && exists && prev.State != catalog.MismatchResolved:
			prev.State, prev.LastSeen, prev.Generation = catalog.MismatchResolved, now, gen
			if err := v.cfg.Catalog.SaveVerifyMismatch(ctx, prev); err != nil {
				return err
			}
		case !found:
			m := catalog.VerifyMismatch{Migration: run.Migration, RunID: run.RunID, Key: key, KeyString: ks,
				Kind: catalog.KindIndexMissing, State: catalog.MismatchConfirmed, FirstSeen: now, LastSeen: now,
				Generation: gen, Detail: "the new store has no index " + want.String()}
			if exists && prev.State != catalog.MismatchResolved {
				m.FirstSeen = prev.FirstSeen
			}
			if err := v.cfg.Catalog.SaveVerifyMismatch(ctx, m); err != nil {
				return err
			}
			if !exists || prev.State == catalog.MismatchResolved {
				v.log.Warn("verification: an index the spec requires is missing", "index", want.String())
				v.cfg.Metrics.found.WithLabelValues(v.cfg.Migration, string(catalog.KindIndexMissing)).Inc()
			}
		}
	}
	return nil
}

// indexMatches says whether a store's index satisfies a required one: the same fields in the
// same order (and, for MongoDB, the same directions), unique and sparse where required, and
// the same name where one is given (always, for a DynamoDB secondary index).
func indexMatches(want transform.Index, have adapters.IndexInfo, dynamo bool) bool {
	if want.Name != "" && want.Name != have.Name {
		return false
	}
	if len(want.Keys) != len(have.Keys) {
		return false
	}
	for i, k := range want.Keys {
		if have.Keys[i].Key != k.Field {
			return false
		}
		if !dynamo && fmt.Sprint(have.Keys[i].Value) != fmt.Sprint(k.Order) {
			return false
		}
	}
	return (!want.Unique || have.Unique) && (!want.Sparse || have.Sparse)
}
