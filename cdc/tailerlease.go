package cdc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tandemdb/tandem/catalog"
)

// ErrLeaseLost means another process claimed the path's lease (this one's had expired): the
// tailer stops before it saves another checkpoint, and its Run returns an error wrapping this.
var ErrLeaseLost = errors.New("change-capture lease lost")

// Leases is where tailers elect one holder per path: *catalog.Catalog.
type Leases interface {
	NewestCDCLease(ctx context.Context, migration, path string) (catalog.CDCLease, bool, error)
	ClaimCDCLease(ctx context.Context, l catalog.CDCLease) error
	RenewCDCLease(ctx context.Context, l catalog.CDCLease) error
	ProcessID() string
}

// leaseHold is a lease this tailer holds.
type leaseHold struct {
	mu    sync.Mutex
	lease catalog.CDCLease
}

func (h *leaseHold) get() catalog.CDCLease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lease
}

func (h *leaseHold) setExpiry(t time.Time) {
	h.mu.Lock()
	h.lease.ExpiresAt = t
	h.mu.Unlock()
}

// acquire waits until this tailer holds the path's lease: it claims the next generation when
// the newest has expired (its holder crashed, hung or stopped) or none exists, and polls every
// third of the lease otherwise.
func (t *Tailer) acquire(ctx context.Context) (*leaseHold, error) {
	lc := t.cfg.Leases
	waiting := ""
	for {
		newest, found, err := lc.NewestCDCLease(ctx, t.cfg.Migration, t.path)
		if err != nil {
			return nil, err
		}
		now := t.cfg.Now()
		if !found || !now.Before(newest.ExpiresAt) {
			next := catalog.CDCLease{Migration: t.cfg.Migration, Path: t.path, Generation: newest.Generation + 1,
				Owner: lc.ProcessID(), ClaimedAt: now, ExpiresAt: now.Add(t.cfg.Lease)}
			err := lc.ClaimCDCLease(ctx, next)
			if err == nil {
				t.log.Info("holds the change-capture lease", "generation", next.Generation, "previous", newest.Owner)
				return &leaseHold{lease: next}, nil
			}
			if !errors.Is(err, catalog.ErrConflict) {
				return nil, err
			}
			continue // another process won this generation: look again
		}
		if waiting != newest.Owner {
			waiting = newest.Owner
			t.log.Info("waiting for the change-capture lease", "holder", newest.Owner, "expires", newest.ExpiresAt)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(t.cfg.Lease / 3):
		}
	}
}

// renewLoop renews the lease every third of its length until ctx ends; a renewal that fails is
// retried at the next tick (the fence stops the tailer once the lease has expired).
func (t *Tailer) renewLoop(ctx context.Context, h *leaseHold) {
	tick := time.NewTicker(t.cfg.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l := h.get()
		l.ExpiresAt = t.cfg.Now().Add(t.cfg.Lease)
		if err := t.cfg.Leases.RenewCDCLease(ctx, l); err != nil {
			if ctx.Err() == nil {
				t.log.Warn("renewing the change-capture lease", "err", err)
			}
			continue
		}
		h.setExpiry(l.ExpiresAt)
	}
}

// fence checks, before a checkpoint is saved, that this tailer still holds the lease: its own
// expiry has not passed, and no newer generation was claimed.
func (t *Tailer) fence(ctx context.Context, h *leaseHold) error {
	l := h.get()
	if !t.cfg.Now().Before(l.ExpiresAt) {
		return fmt.Errorf("%s of %s: the lease of generation %d expired at %s: %w", t.path, t.cfg.Migration, l.Generation, l.ExpiresAt, ErrLeaseLost)
	}
	newest, _, err := t.cfg.Leases.NewestCDCLease(ctx, t.cfg.Migration, t.path)
	if err != nil {
		return err
	}
	if newest.Generation != l.Generation {
		return fmt.Errorf("%s of %s: generation %d claimed by %s: %w", t.path, t.cfg.Migration, newest.Generation, newest.Owner, ErrLeaseLost)
	}
	return nil
}

// release ends the lease at once, so that another process need not wait for it to expire.
func (t *Tailer) release(h *leaseHold) {
	l := h.get()
	l.ExpiresAt = t.cfg.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.cfg.Leases.RenewCDCLease(ctx, l); err != nil {
		t.log.Warn("releasing the change-capture lease", "err", err)
	}
}
