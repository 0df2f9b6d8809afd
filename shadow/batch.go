package shadow

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/transform"
)

// ConvergeBatch converges many keys with one batched read of each store and one bulk write:
// the form for backfill and for draining a journal. It holds the lock stripes of all its keys
// while it works, so it never interleaves with a Converge of the same key. Results are in the
// order of keys (a key given twice is converged once and reported once). Dead letters are
// handled per key as in Converge; an error means the batch should be retried as a whole.
func (e *Engine) ConvergeBatch(ctx context.Context, keys []adapters.Key, dir Direction) ([]Result, error) {
	src, dst, fn, err := e.route(dir)
	if err != nil {
		return nil, err
	}
	type item struct {
		key adapters.Key
		ks  string
	}
	items := make([]item, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	var stripes []int
	for _, k := range keys {
		ks := adapters.KeyString(k)
		if _, dup := seen[ks]; dup {
			continue
		}
		seen[ks] = struct{}{}
		items = append(items, item{k, ks})
		stripes = append(stripes, stripeOf(ks, len(e.stripes)))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, s := range stripes { // ascending order: no deadlock with other batches
		e.stripes[s].Lock()
	}
	defer func() {
		for _, s := range stripes {
			e.stripes[s].Unlock()
		}
	}()

	start := time.Now()
	uniq := make([]adapters.Key, len(items))
	for i, it := range items {
		uniq[i] = it.key
	}
	docs, err := src.BatchGet(ctx, uniq)
	if err != nil {
		return nil, fmt.Errorf("converge batch %s: reading %d source documents: %w", dir, len(uniq), err)
	}
	current, err := dst.BatchGet(ctx, uniq)
	if err != nil {
		return nil, fmt.Errorf("converge batch %s: reading %d target documents: %w", dir, len(uniq), err)
	}
	results := make([]Result, len(items))
	var ops []adapters.WriteOp
	var opIndex []int
	for i, it := range items {
		results[i].Key = it.key
		if e.echo.echo(dir, it.ks, docs[it.ks]) {
			results[i].Action = Echo
			continue
		}
		var want bson.D
		if doc, ok := docs[it.ks]; ok {
			out, terr := fn(doc)
			if terr != nil {
				if results[i], err = e.deadLetter(ctx, results[i], it.ks, dir, stepName(terr), terr); err != nil {
					return nil, err
				}
				continue
			}
			if want, err = dst.Normalize(out); err != nil {
				if results[i], err = e.deadLetter(ctx, results[i], it.ks, dir, "write", err); err != nil {
					return nil, err
				}
				continue
			}
		}
		have, exists := current[it.ks]
		switch {
		case want == nil && !exists, want != nil && exists && transform.Equal(want, have):
			results[i].Action = Unchanged
		case want == nil:
			results[i].Action = Deleted
			ops, opIndex = append(ops, adapters.WriteOp{Key: it.key}), append(opIndex, i)
		default:
			results[i].Action = Upserted
			ops, opIndex = append(ops, adapters.WriteOp{Key: it.key, Doc: want}), append(opIndex, i)
		}
	}
	if len(ops) > 0 {
		if err := dst.BulkWrite(ctx, ops); err != nil {
			if !permanent(err) {
				return nil, fmt.Errorf("converge batch %s: writing %d documents: %w", dir, len(ops), err)
			}
			// One document spoils the batch: write them one by one to find it.
			for j, op := range ops {
				i := opIndex[j]
				if werr := writeOne(ctx, dst, op); werr != nil {
					if !permanent(werr) {
						return nil, fmt.Errorf("converge batch %s: writing %s: %w", dir, items[i].ks, werr)
					}
					if results[i], err = e.deadLetter(ctx, results[i], items[i].ks, dir, "write", werr); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	for j, op := range ops {
		if i := opIndex[j]; results[i].Action != DeadLettered {
			e.echo.recorded(dir, items[i].ks, op.Doc)
		}
	}
	per := time.Since(start) / time.Duration(max(len(items), 1))
	for i, r := range results {
		e.cfg.Metrics.observe(dir, r.Action, nil, per)
		if r.Action != DeadLettered && r.Action != Echo {
			if err := e.resolve(ctx, items[i].ks, dir); err != nil {
				return results, err
			}
		}
	}
	return results, nil
}

func writeOne(ctx context.Context, dst adapters.Store, op adapters.WriteOp) error {
	if op.Doc == nil {
		return dst.Delete(ctx, op.Key)
	}
	return dst.Upsert(ctx, op.Doc)
}
