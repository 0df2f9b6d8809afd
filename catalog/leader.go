package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// collLeaderLeases holds the leader leases of singleton work (a change-stream tailer): one
// record per lease name and generation.
const collLeaderLeases = "leader_leases"

// Sentinel errors of leader leases.
var (
	// ErrLeaseHeld means the newest generation of a leader lease is held by a live owner: it
	// is neither released nor expired (by more than the clock skew allowed).
	ErrLeaseHeld = errors.New("leader lease held by another owner")
	// ErrLeaseLost means a newer generation of the lease exists (its holder was taken over)
	// or the lease's record is gone: the caller no longer leads and must stop its work.
	ErrLeaseLost = errors.New("leader lease lost to a newer generation")
)

// LeaderLease is one generation of a named leader lease (e.g. "users/cdc-forward").
//
// Generation g+1 is claimed by inserting its record, with the _id LeaderLeaseID(name, g+1),
// which only one process can do; after that only its owner writes the record (renewals and the
// release). Nothing relies on a conditional update being atomic between writers, which on
// FerretDB it is not. The newest generation is the lease's state; its number is the fencing
// token of the work done under it.
type LeaderLease struct {
	ID         string    `bson:"_id"`
	Name       string    `bson:"name"`
	Generation int64     `bson:"generation"`
	Owner      string    `bson:"owner"`
	AcquiredAt time.Time `bson:"acquired_at"`
	RenewedAt  time.Time `bson:"renewed_at"`
	// ExpiresAt is the holder's promise: it stops its work by then, by its own clock, unless a
	// renewal moved it on.
	ExpiresAt time.Time `bson:"expires_at"`
	// Released says the holder stopped its work and gave the lease up: a successor need not
	// wait for ExpiresAt.
	Released bool `bson:"released"`
	// Predecessor is the owner of the generation before, "" for the first.
	Predecessor string `bson:"predecessor,omitempty"`
	// TookOver says the generation before had expired rather than been released: its holder
	// died or lost the catalog.
	TookOver bool `bson:"took_over"`
}

// LeaderLeaseID is the _id of a lease's generation. The generation is zero-padded so that the
// ids of one lease sort by generation.
func LeaderLeaseID(name string, generation int64) string {
	return fmt.Sprintf("%s#%019d", name, generation)
}

// LeaderClaim is a generation just acquired and when its work may start.
type LeaderClaim struct {
	Lease LeaderLease
	// NotBefore is when the predecessor has certainly stopped: its last recorded expiry plus
	// the clock skew allowed, read again after the claim (a renewal may have landed between
	// the read that judged it expired and the claim). Zero when there was no predecessor or it
	// released the lease. Work under the new generation must not start before it.
	NotBefore time.Time
}

// ceilMillis rounds t up to BSON's millisecond precision: a stored expiry is never earlier
// than the one the holder keeps.
func ceilMillis(t time.Time) time.Time {
	if r := t.Truncate(time.Millisecond); !r.Equal(t) {
		return r.Add(time.Millisecond)
	}
	return t
}

// CheckLeaderLeaseName validates the name of a leader lease: not empty, and no '#' (which
// separates the name from the generation in the records' ids).
func CheckLeaderLeaseName(name string) error {
	switch {
	case name == "":
		return errors.New("leader lease: empty name")
	case strings.ContainsRune(name, '#'):
		return fmt.Errorf("leader lease %q: the name may not contain '#'", name)
	}
	return nil
}

// checkLeaseArgs validates the arguments common to the leader lease calls.
func checkLeaseArgs(name, owner string, ttl time.Duration) error {
	if err := CheckLeaderLeaseName(name); err != nil {
		return err
	}
	switch {
	case owner == "":
		return fmt.Errorf("leader lease %s: empty owner", name)
	case ttl <= 0:
		return fmt.Errorf("leader lease %s: the time to live must be positive, not %s", name, ttl)
	}
	return nil
}

// AcquireLeaderLease claims the next generation of lease name for owner, valid for ttl, when
// there is none yet, or when the newest generation is released, or expired by more than skew by
// this catalog's clock (skew is the difference between processes' clocks to allow for). It fails
// with ErrLeaseHeld, naming the holder, while the newest generation is live, and with
// ErrConflict when another process claimed the same generation first. Older generations than
// the predecessor are pruned, best effort.
func (c *Catalog) AcquireLeaderLease(ctx context.Context, name, owner string, ttl, skew time.Duration) (LeaderClaim, error) {
	if err := checkLeaseArgs(name, owner, ttl); err != nil {
		return LeaderClaim{}, err
	}
	if skew < 0 {
		return LeaderClaim{}, fmt.Errorf("leader lease %s: negative clock skew %s", name, skew)
	}
	prev, err := c.LeaderLease(ctx, name)
	hasPrev := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return LeaderClaim{}, err
	}
	now := c.now().UTC().Truncate(time.Millisecond)
	if hasPrev && !prev.Released && !now.After(prev.ExpiresAt.Add(skew)) {
		return LeaderClaim{}, fmt.Errorf("leader lease %s: generation %d is held by %s until %s: %w",
			name, prev.Generation, prev.Owner, prev.ExpiresAt.Format(time.RFC3339Nano), ErrLeaseHeld)
	}
	next := LeaderLease{
		Name: name, Generation: prev.Generation + 1, Owner: owner,
		AcquiredAt: now, RenewedAt: now, ExpiresAt: ceilMillis(now.Add(ttl)),
		Predecessor: prev.Owner, TookOver: hasPrev && !prev.Released,
	}
	next.ID = LeaderLeaseID(name, next.Generation)
	if _, err := c.db.Collection(collLeaderLeases).InsertOne(ctx, next); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return LeaderClaim{}, fmt.Errorf("leader lease %s: generation %d claimed by another process: %w", name, next.Generation, ErrConflict)
		}
		return LeaderClaim{}, fmt.Errorf("leader lease %s: claiming generation %d: %w", name, next.Generation, err)
	}
	claim := LeaderClaim{Lease: next}
	if hasPrev {
		// The predecessor may have renewed after the read above: its record now holds its
		// last promise, since any renewal it makes from here on finds this generation.
		again, err := c.leaderGeneration(ctx, name, prev.Generation)
		switch {
		case errors.Is(err, ErrNotFound):
			again = prev
		case err != nil:
			// Unknown: assume the predecessor renewed just now, for its time to live.
			again = prev
			again.Released, again.ExpiresAt = false, c.now().UTC().Add(prev.ExpiresAt.Sub(prev.RenewedAt))
		}
		if !again.Released {
			claim.NotBefore = again.ExpiresAt.Add(skew)
		}
		c.pruneLeaderLeases(ctx, name, prev.Generation)
	}
	return claim, nil
}

// RenewLeaderLease moves l's expiry to ttl from now, then checks that no newer generation
// exists; it returns the renewed lease, or an error wrapping ErrLeaseLost when a newer
// generation exists or l's record is gone. Only l's owner may call it, one call at a time.
//
// The order matters: once the newer generation's claim has read this record again (see
// LeaderClaim.NotBefore), a renewal written after it is always followed by a check that finds
// the newer generation, so the holder never works past the expiry its successor waited for.
// A caller must therefore extend its own deadline only when RenewLeaderLease returns nil, and
// from a time taken before the call.
func (c *Catalog) RenewLeaderLease(ctx context.Context, l LeaderLease, ttl time.Duration) (LeaderLease, error) {
	if err := checkLeaseArgs(l.Name, l.Owner, ttl); err != nil {
		return l, err
	}
	now := c.now().UTC()
	next := l
	next.RenewedAt, next.ExpiresAt = now.Truncate(time.Millisecond), ceilMillis(now.Add(ttl))
	res, err := c.db.Collection(collLeaderLeases).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: LeaderLeaseID(l.Name, l.Generation)}, {Key: "owner", Value: l.Owner}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "renewed_at", Value: next.RenewedAt}, {Key: "expires_at", Value: next.ExpiresAt}}}})
	if err != nil {
		return l, fmt.Errorf("leader lease %s: renewing generation %d: %w", l.Name, l.Generation, err)
	}
	if res.MatchedCount == 0 {
		return l, fmt.Errorf("leader lease %s: generation %d of %s is gone: %w", l.Name, l.Generation, l.Owner, ErrLeaseLost)
	}
	if err := c.fenceLeaderLease(ctx, l); err != nil {
		return l, err
	}
	return next, nil
}

// fenceLeaderLease fails with ErrLeaseLost when a newer generation of l's lease exists.
func (c *Catalog) fenceLeaderLease(ctx context.Context, l LeaderLease) error {
	newer, err := c.leaderGeneration(ctx, l.Name, l.Generation+1)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("leader lease %s: checking for a generation after %d: %w", l.Name, l.Generation, err)
	}
	return fmt.Errorf("leader lease %s: generation %d of %s was taken over by %s (generation %d): %w",
		l.Name, l.Generation, l.Owner, newer.Owner, newer.Generation, ErrLeaseLost)
}

// ReleaseLeaderLease gives l up: marked released and expired now, so that a successor claims
// it at once and starts without waiting. Call it only once the work under l has stopped. Only
// l's owner may call it; releasing a lease that was taken over changes nothing that is read.
func (c *Catalog) ReleaseLeaderLease(ctx context.Context, l LeaderLease) error {
	now := c.now().UTC().Truncate(time.Millisecond)
	_, err := c.db.Collection(collLeaderLeases).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: LeaderLeaseID(l.Name, l.Generation)}, {Key: "owner", Value: l.Owner}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "released", Value: true}, {Key: "expires_at", Value: now}, {Key: "renewed_at", Value: now}}}})
	if err != nil {
		return fmt.Errorf("leader lease %s: releasing generation %d: %w", l.Name, l.Generation, err)
	}
	return nil
}

// LeaderLease returns the newest generation of lease name, or an error wrapping ErrNotFound
// when it was never acquired.
func (c *Catalog) LeaderLease(ctx context.Context, name string) (LeaderLease, error) {
	var l LeaderLease
	err := c.db.Collection(collLeaderLeases).FindOne(ctx, bson.D{{Key: "name", Value: name}},
		options.FindOne().SetSort(bson.D{{Key: "generation", Value: -1}})).Decode(&l)
	if err != nil {
		return l, notFound(err, "leader lease "+name)
	}
	return l, nil
}

// LeaderLeases returns the generations of lease name that are kept (the newest two at least),
// oldest first.
func (c *Catalog) LeaderLeases(ctx context.Context, name string) ([]LeaderLease, error) {
	cur, err := c.db.Collection(collLeaderLeases).Find(ctx, bson.D{{Key: "name", Value: name}},
		options.Find().SetSort(bson.D{{Key: "generation", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading leader lease %s: %w", name, err)
	}
	var out []LeaderLease
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading leader lease %s: %w", name, err)
	}
	return out, nil
}

// leaderGeneration reads one generation of a lease, or an error wrapping ErrNotFound.
func (c *Catalog) leaderGeneration(ctx context.Context, name string, generation int64) (LeaderLease, error) {
	var l LeaderLease
	id := LeaderLeaseID(name, generation)
	if err := c.db.Collection(collLeaderLeases).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&l); err != nil {
		return l, notFound(err, "leader lease "+id)
	}
	return l, nil
}

// pruneLeaderLeases removes the generations of a lease before keep, best effort: no one reads
// them, and a stale owner's renewal of one finds its record gone (ErrLeaseLost).
func (c *Catalog) pruneLeaderLeases(ctx context.Context, name string, keep int64) {
	_, _ = c.db.Collection(collLeaderLeases).DeleteMany(ctx,
		bson.D{{Key: "name", Value: name}, {Key: "generation", Value: bson.D{{Key: "$lt", Value: keep}}}})
}
