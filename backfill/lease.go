package backfill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/catalog"
)

// errAllDone means every partition of the plan is done; errLeaseLost that another process
// claimed a newer generation of the partition this worker was copying.
var (
	errAllDone   = errors.New("every partition is done")
	errLeaseLost = errors.New("partition lease taken over")
)

// held is a partition this process has claimed. mu serializes the writes of its lease record:
// the renewals and the worker's checkpoints (FerretDB's updates of one document are not atomic
// between concurrent writers, even within one process).
type held struct {
	part catalog.BackfillPartition
	// generation is the lease's generation, fixed for as long as it is held: read without mu.
	generation int64

	mu    sync.Mutex
	lease catalog.BackfillLease // as last saved
	lost  atomic.Bool
}

// leaseSet is the partitions this process holds.
type leaseSet struct {
	mu   sync.Mutex
	held map[int]*held
}

func (s *leaseSet) add(h *held) {
	s.mu.Lock()
	s.held[h.part.Index] = h
	s.mu.Unlock()
}

func (s *leaseSet) drop(h *held) {
	s.mu.Lock()
	delete(s.held, h.part.Index)
	s.mu.Unlock()
}

func (s *leaseSet) has(partition int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.held[partition]
	return ok
}

func (s *leaseSet) all() []*held {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*held, 0, len(s.held))
	for _, h := range s.held {
		out = append(out, h)
	}
	return out
}

func (s *leaseSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// claim takes a partition: one no process has claimed, or one whose newest lease has expired
// (its holder crashed or lost the catalog), by inserting the next generation's lease record.
// The new generation starts from the old one's checkpoint and counters, and first converges
// the keys of the batch the old one may have been writing. It returns nil, nil when every
// partition left is held by a live lease, and errAllDone when every partition is done.
func (b *Backfill) claim(ctx context.Context, worker int) (*held, error) {
	var leases map[int]catalog.BackfillLease
	if err := b.retry(ctx, "read leases", func(ctx context.Context) (err error) {
		leases, err = b.cfg.Catalog.BackfillLeases(ctx, b.cfg.Migration, b.plan.PlanID)
		return err
	}); err != nil {
		return nil, err
	}
	now := time.Now()
	var fresh, expired []catalog.BackfillLease
	done := 0
	for _, p := range b.parts {
		l, ok := leases[p.Index]
		switch {
		case b.leases.has(p.Index):
			// held here already: its renewals may lag (a slow catalog), not its worker
		case !ok:
			fresh = append(fresh, catalog.BackfillLease{Partition: p.Index})
		case l.Done:
			done++
		case now.After(l.ExpiresAt):
			expired = append(expired, l)
		}
	}
	b.m.partitionsDone.Set(float64(done))
	if done == len(b.parts) {
		return nil, errAllDone
	}
	// Workers start at different places so that they seldom race for one record.
	rotate := func(ls []catalog.BackfillLease) {
		if len(ls) > 1 {
			k := (worker + rand.IntN(len(ls))) % len(ls)
			ls2 := append(append([]catalog.BackfillLease{}, ls[k:]...), ls[:k]...)
			copy(ls, ls2)
		}
	}
	rotate(fresh)
	rotate(expired)
	for _, prev := range append(fresh, expired...) {
		next := prev // the checkpoint, counters and pending keys carry over
		next.Migration, next.PlanID, next.Owner = b.cfg.Migration, b.plan.PlanID, b.cfg.Owner
		next.Generation = prev.Generation + 1
		next.ClaimedAt, next.UpdatedAt, next.ExpiresAt = now.UTC(), now.UTC(), now.Add(b.cfg.Lease).UTC()
		next.ID = catalog.BackfillLeaseID(next.Migration, next.PlanID, next.Partition, next.Generation)
		err := b.cfg.Catalog.ClaimBackfillLease(ctx, next)
		if errors.Is(err, catalog.ErrConflict) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			b.log.Warn("claiming a partition", "partition", next.Partition, "err", err)
			return nil, nil // catalog trouble: the caller waits and lists again
		}
		h := &held{part: b.parts[next.Partition], generation: next.Generation, lease: next}
		b.leases.add(h)
		if prev.Generation > 0 {
			b.log.Info("partition taken over", "partition", next.Partition, "generation", next.Generation, "from", prev.Owner, "pending", len(prev.Pending))
		}
		if len(next.Pending) > 0 {
			err := b.convergePending(ctx, h)
			if errors.Is(err, errLeaseLost) {
				b.leases.drop(h)
				return nil, nil
			}
			if err != nil {
				return nil, err // h stays held, for releaseAll
			}
		}
		return h, nil
	}
	return nil, nil
}

// convergePending converges the keys of the batch the previous generation announced and may
// have written without re-checking (it crashed or was cut off), then clears them.
func (b *Backfill) convergePending(ctx context.Context, h *held) error {
	for _, k := range h.lease.Pending {
		if err := b.reconverge(ctx, k); err != nil {
			return err
		}
	}
	b.reconv.Add(int64(len(h.lease.Pending)))
	return b.save(ctx, h, func(l *catalog.BackfillLease) {
		l.Reconverged += int64(len(l.Pending))
		l.Pending = nil
	})
}

// save applies change to the held lease and writes it, renewing its expiry, unless a newer
// generation exists (then errLeaseLost, and nothing is written). It waits out a catalog outage.
// The fence (read the next generation, then write) is not atomic: a takeover between the two
// lets this stale owner write its own record once more, which no one reads any longer, since a
// partition's state is its newest generation.
func (b *Backfill) save(ctx context.Context, h *held, change func(*catalog.BackfillLease)) error {
	if err := b.fence(ctx, h); err != nil {
		return err
	}
	// Each attempt holds h.mu only while it writes, so the renewals of this process's other
	// leases (renewLoop) never wait behind a save that waits out an outage between attempts.
	// An attempt has no deadline of its own: a write the client gave up on may still run on
	// the server, and the next attempt would then race it on the same record (which FerretDB
	// does not order) and pile abandoned writes up on a server that is slow already; on
	// FerretDB's SQLite backend a hundred of them deadlock its connection pool for good. A
	// write that hangs holds only this lease (renew skips it), which expires and is taken over.
	err := b.retry(ctx, "save checkpoint", func(ctx context.Context) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		l := h.lease
		change(&l)
		l.UpdatedAt = time.Now().UTC()
		l.ExpiresAt = time.Now().Add(b.cfg.Lease).UTC()
		err := b.cfg.Catalog.SaveBackfillLease(ctx, l)
		if errors.Is(err, catalog.ErrNotFound) {
			// The record is gone or has another owner: this process no longer holds the
			// partition, whatever the fence read. Its state stays as last saved.
			h.lost.Store(true)
			return fmt.Errorf("%w: %w", errLeaseLost, err)
		}
		if err == nil {
			h.lease = l
		}
		return err
	})
	if errors.Is(err, errLeaseLost) {
		return errLeaseLost
	}
	return err
}

// fence returns errLeaseLost once a newer generation of h's partition exists.
func (b *Backfill) fence(ctx context.Context, h *held) error {
	if h.lost.Load() {
		return errLeaseLost
	}
	var newer bool
	if err := b.retry(ctx, "fence", func(ctx context.Context) (err error) {
		newer, err = b.cfg.Catalog.BackfillLeaseExists(ctx, b.cfg.Migration, b.plan.PlanID, h.part.Index, h.generation+1)
		return err
	}); err != nil {
		return err
	}
	if newer {
		h.lost.Store(true)
		return errLeaseLost
	}
	return nil
}

// usable waits until h's lease is unexpired by this process's clock (a catalog outage can
// stop renewals), and fails with errLeaseLost once a newer generation exists. Writing only
// under an unexpired lease keeps two processes from copying one partition at once; it is not
// what keeps the target right (see the package doc).
func (b *Backfill) usable(ctx context.Context, h *held) error {
	for {
		if h.lost.Load() {
			return errLeaseLost
		}
		h.mu.Lock()
		expires := h.lease.ExpiresAt
		h.mu.Unlock()
		if time.Until(expires) > b.cfg.Lease/10 {
			return nil
		}
		b.renew(ctx, h)
		if h.lost.Load() {
			return errLeaseLost
		}
		h.mu.Lock()
		expires = h.lease.ExpiresAt
		h.mu.Unlock()
		if time.Until(expires) > b.cfg.Lease/10 {
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// renewLoop extends every held lease every Lease/3.
func (b *Backfill) renewLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, h := range b.leases.all() {
			b.renew(ctx, h)
		}
	}
}

// renew extends one lease once (no retry: the next tick tries again), then checks the fence.
// A lease whose checkpoint is being written is skipped: that write extends it too, and
// waiting for it would stop the renewals of every other lease behind a slow write.
func (b *Backfill) renew(ctx context.Context, h *held) {
	if h.lost.Load() || !h.mu.TryLock() {
		return
	}
	l := h.lease
	l.ExpiresAt = time.Now().Add(b.cfg.Lease).UTC()
	l.UpdatedAt = time.Now().UTC()
	err := b.cfg.Catalog.SaveBackfillLease(ctx, l) // no deadline of its own: see save
	if err == nil {
		h.lease = l
	}
	h.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("renewing a partition lease", "partition", h.part.Index, "err", err)
			b.m.errors.WithLabelValues("catalog").Inc()
		}
		return
	}
	newer, err := b.cfg.Catalog.BackfillLeaseExists(ctx, b.cfg.Migration, b.plan.PlanID, h.part.Index, h.generation+1)
	if err == nil && newer {
		h.lost.Store(true)
	}
}

// releaseAll lets other processes claim this process's unfinished partitions at once: their
// leases expire now. Their checkpoints and pending keys stay.
func (b *Backfill) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, h := range b.leases.all() {
		if h.lost.Load() {
			continue
		}
		h.mu.Lock()
		l := h.lease
		l.ExpiresAt = time.Now().UTC()
		if err := b.cfg.Catalog.SaveBackfillLease(ctx, l); err != nil {
			b.log.Warn("releasing a partition lease", "partition", h.part.Index, "err", fmt.Sprint(err))
		}
		h.mu.Unlock()
		b.leases.drop(h)
	}
}
