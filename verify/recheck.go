package verify

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// recheck compares a recheck task's keys again. It first waits until each key's difference
// is Settle old, so that a converge still queued lands first, then reads old, then new, then
// old again: a key whose old document changed between the two old reads is taken as agreeing
// if new holds the transform of either, since a writer that converges writes old first and
// new after. A recheck task is small (Batch keys) and saves no checkpoint: after a crash it is
// done again, which changes nothing (a key confirmed already stays confirmed).
func (v *verifier) recheck(ctx context.Context, run catalog.VerifyRun, h *held) error {
	keys := h.task.Keys
	if len(keys) == 0 {
		return nil
	}
	if err := v.settle(ctx, run, keys); err != nil {
		return err
	}
	if v.cfg.beforeRecheck != nil {
		v.cfg.beforeRecheck(keys)
	}
	v.rechecked.Add(int64(len(keys)))
	old1, err := v.cfg.Old.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("rechecking %d keys: reading the old store: %w", len(keys), err)
	}
	cur, err := v.cfg.New.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("rechecking %d keys: reading the new store: %w", len(keys), err)
	}
	old2, err := v.cfg.Old.BatchGet(ctx, keys)
	if err != nil {
		return fmt.Errorf("rechecking %d keys: reading the old store: %w", len(keys), err)
	}
	var res batchResult
	for _, k := range keys {
		ks := adapters.KeyString(k)
		o := v.classify(old1[ks], cur[ks])
		if !o.same() && !sameDoc(old1[ks], old2[ks]) {
			o = v.classify(old2[ks], cur[ks]) // the latest state, if it differs too
		}
		if err := v.note(ctx, run, h.task.Generation, k, o, true); err != nil {
			return err
		}
		if !o.same() {
			res.found.Add(o.kind, 1)
		}
		if old1[ks] != nil {
			res.oldDocs++
		}
		if cur[ks] != nil {
			res.newDocs++
		}
	}
	res.compared = int64(len(keys))
	v.cfg.Metrics.compared.WithLabelValues(v.cfg.Migration, catalog.StoreRecheck).Add(float64(len(keys)))
	return v.save(ctx, h, func(l *catalog.VerifyLease) {
		l.Compared += res.compared
		l.OldDocs += res.oldDocs
		l.NewDocs += res.newDocs
		l.Found.AddAll(res.found)
	})
}

// settle waits until the youngest open difference among keys is Settle old.
func (v *verifier) settle(ctx context.Context, run catalog.VerifyRun, keys []any) error {
	if run.Settle <= 0 {
		return nil
	}
	var youngest time.Time
	for _, k := range keys {
		m, ok, err := v.cfg.Catalog.VerifyMismatchOf(ctx, run.Migration, run.RunID, adapters.KeyString(k))
		if err != nil {
			return err
		}
		if ok && m.State != catalog.MismatchResolved && m.FirstSeen.After(youngest) {
			youngest = m.FirstSeen
		}
	}
	if d := time.Until(youngest.Add(run.Settle)); d > 0 {
		sleep(ctx, d)
	}
	return ctx.Err()
}

// waitN takes n tokens from l (nil: unlimited), in bursts of at most its burst.
func waitN(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		k := min(n, l.Burst())
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
