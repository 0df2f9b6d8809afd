package verify

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/catalog"
)

// Task leases follow the backfill's scheme (backfill/lease.go): attempt a+1 of a task is
// claimed by inserting its lease record once attempt a's has expired, which only one process
// can do; after that only its owner writes it, and an owner stops as soon as a newer attempt
// exists (the fence). A task's state is its newest attempt: its checkpoint and counters carry
// over, so a task taken over from a crashed process resumes after its last checkpoint. Two
// processes comparing one key at once is harmless (both read, neither writes the stores); the
// leases are about sharing the work and resuming it, not about correctness.

// errLeaseLost means another process claimed a newer attempt of the task this worker held.
var errLeaseLost = errors.New("verification task taken over")

// The states claim reports when it claims nothing.
type genState int

const (
	genBusy genState = iota // tasks are left, all held by live leases
	genDone                 // every task of the generation is done
)

// held is a task this process has claimed. mu serializes the writes of its lease record (the
// renewals and the checkpoints).
type held struct {
	task    catalog.VerifyTask
	attempt int64 // fixed while held: read without mu

	mu    sync.Mutex
	lease catalog.VerifyLease // as last saved
	lost  atomic.Bool
	stop  context.CancelFunc // stops the renewals
}

// claim takes a task of gen: one nobody has claimed, or one whose newest lease has expired.
func (v *verifier) claim(ctx context.Context, run catalog.VerifyRun, gen catalog.VerifyGeneration, worker int) (*held, genState, error) {
	cat := v.cfg.Catalog
	tasks, err := cat.VerifyTasks(ctx, run.Migration, run.RunID, gen.Generation)
	if err != nil {
		return nil, genBusy, err
	}
	leases, err := cat.VerifyLeases(ctx, run.Migration, run.RunID, gen.Generation)
	if err != nil {
		return nil, genBusy, err
	}
	now := time.Now()
	var candidates []catalog.VerifyLease
	done := 0
	for _, t := range tasks {
		l, ok := leases[t.ID]
		switch {
		case ok && l.Done:
			done++
		case v.isHeld(t.ID):
		case !ok:
			candidates = append(candidates, catalog.VerifyLease{Task: t.ID})
		case now.After(l.ExpiresAt):
			candidates = append(candidates, l)
		}
	}
	if done == len(tasks) {
		return nil, genDone, nil
	}
	// Workers start at different places so that they seldom race for one record.
	if n := len(candidates); n > 1 {
		k := (worker + rand.IntN(n)) % n
		candidates = append(candidates[k:], candidates[:k]...)
	}
	byID := make(map[string]catalog.VerifyTask, len(tasks))
	for _, t := range tasks {
		byID[t.ID] = t
	}
	for _, prev := range candidates {
		next := prev // the checkpoint and counters carry over
		next.Migration, next.RunID, next.Generation, next.Owner = run.Migration, run.RunID, gen.Generation, v.cfg.Owner
		next.Attempt = prev.Attempt + 1
		next.ClaimedAt, next.UpdatedAt, next.ExpiresAt = now.UTC(), now.UTC(), now.Add(v.cfg.Lease).UTC()
		next.Error = ""
		next.ID = catalog.VerifyLeaseID(next.Task, next.Attempt)
		err := cat.ClaimVerifyLease(ctx, next)
		if errors.Is(err, catalog.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, genBusy, err
		}
		if prev.Attempt > 0 {
			v.log.Info("verification task taken over", "task", next.Task, "attempt", next.Attempt, "from", prev.Owner, "after", prev.AfterString)
		}
		h := &held{task: byID[next.Task], attempt: next.Attempt, lease: next}
		v.holding.Store(next.Task, true)
		v.held.Add(1)
		rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		h.stop = stop
		go v.renewLoop(rctx, h)
		return h, genBusy, nil
	}
	return nil, genBusy, nil
}

func (v *verifier) isHeld(task string) bool {
	_, ok := v.holding.Load(task)
	return ok
}

// drop forgets a task this process held and stops its renewals.
func (v *verifier) drop(h *held) {
	h.stop()
	if _, ok := v.holding.LoadAndDelete(h.task.ID); !ok {
		return // dropped before (release after a lost lease, say)
	}
	v.held.Add(-1)
	v.droppedMu.Lock()
	if v.dropped != nil {
		close(v.dropped)
		v.dropped = nil
	}
	v.droppedMu.Unlock()
}

// save applies change to the held lease and writes it, renewing its expiry, unless a newer
// attempt exists (then errLeaseLost, and nothing is written).
func (v *verifier) save(ctx context.Context, h *held, change func(*catalog.VerifyLease)) error {
	if err := v.fence(ctx, h); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.lease
	change(&l)
	l.UpdatedAt = time.Now().UTC()
	l.ExpiresAt = time.Now().Add(v.cfg.Lease).UTC()
	if err := v.cfg.Catalog.SaveVerifyLease(ctx, l); err != nil {
		return err
	}
	h.lease = l
	return nil
}

// fence returns errLeaseLost once a newer attempt of h's task exists.
func (v *verifier) fence(ctx context.Context, h *held) error {
	if h.lost.Load() {
		return errLeaseLost
	}
	newer, err := v.cfg.Catalog.VerifyLeaseExists(ctx, h.task.ID, h.attempt+1)
	if err != nil {
		return err
	}
	if newer {
		h.lost.Store(true)
		return errLeaseLost
	}
	return nil
}

// renewLoop extends h's lease every Lease/3 until dropped.
func (v *verifier) renewLoop(ctx context.Context, h *held) {
	t := time.NewTicker(v.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, v.cfg.Lease/2)
		err := v.save(rctx, h, func(*catalog.VerifyLease) {})
		cancel()
		if errors.Is(err, errLeaseLost) {
			return
		}
		if err != nil && ctx.Err() == nil {
			v.log.Warn("renewing a verification task lease", "task", h.task.ID, "err", err)
		}
	}
}

// release lets any process claim h at once (its lease expires now), recording why; its
// checkpoint and counters stay.
func (v *verifier) release(ctx context.Context, h *held, reason string) {
	defer v.drop(h)
	if h.lost.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.lease
	l.ExpiresAt, l.Error = time.Now().UTC(), reason
	if err := v.cfg.Catalog.SaveVerifyLease(ctx, l); err != nil {
		v.log.Warn("releasing a verification task", "task", h.task.ID, "err", err)
		return
	}
	h.lease = l
}
