package catalog

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The backfill's collections. Package backfill owns the algorithm (claims, fencing, control);
// the catalog only stores its records, each written by inserts under unique ids or by the one
// process that owns the record, so nothing relies on FerretDB's non-atomic conditional updates.
const (
	collBackfills          = "backfills"           // one plan per migration, with its control state
	collBackfillPartitions = "backfill_partitions" // the plan's partitions, immutable
	collBackfillLeases     = "backfill_leases"     // one record per partition and generation
	collBackfillRunners    = "backfill_runners"    // one record per process: state and rates
)

// KindBackfill is the audit kind of a backfill control change (pause, resume, rate).
const KindBackfill = "backfill"

// BackfillPlan is a migration's backfill: the partition plan that every process follows and the
// control state (pause, rates) that every process obeys. The first process to insert it wins;
// the others read it.
type BackfillPlan struct {
	Migration string `bson:"_id"`
	// PlanID names this plan's partitions, so that partitions a losing process inserted for a
	// plan of its own are never mixed in.
	PlanID      string    `bson:"plan_id"`
	SpecVersion string    `bson:"spec_version"`
	Source      string    `bson:"source"`
	Target      string    `bson:"target"`
	Partitions  int       `bson:"partitions"`
	Estimate    int64     `bson:"estimate"` // source documents when the plan was made
	CreatedBy   string    `bson:"created_by"`
	CreatedAt   time.Time `bson:"created_at"`
	// TargetCreated says the plan's maker created the target (it did not exist).
	TargetCreated bool            `bson:"target_created"`
	Control       BackfillControl `bson:"control"`
}

// BackfillControl is the runtime control of a backfill.
type BackfillControl struct {
	Paused bool `bson:"paused"`
	// Rate and BytesRate limit all processes together, in documents and bytes per second; 0
	// means unlimited.
	Rate      float64   `bson:"rate"`
	BytesRate float64   `bson:"bytes_rate"`
	Revision  int64     `bson:"revision"`
	UpdatedBy string    `bson:"updated_by,omitempty"`
	UpdatedAt time.Time `bson:"updated_at,omitempty"`
}

// BackfillPartition is one part of the source's key space: a MongoDB key range of one BSON type
// class ([Min, Max), Max nil for open) or a DynamoDB scan segment.
type BackfillPartition struct {
	ID        string `bson:"_id"`
	Migration string `bson:"migration"`
	PlanID    string `bson:"plan_id"`
	Index     int    `bson:"index"`
	Min       any    `bson:"min,omitempty"`
	Max       any    `bson:"max,omitempty"`
	// Class is the $type alias of a MongoDB range's keys ("string", "number", …); "" for a
	// segment.
	Class    string `bson:"class,omitempty"`
	Segment  int    `bson:"segment"`
	Segments int    `bson:"segments"`
	Estimate int64  `bson:"estimate"`
}

// BackfillLease is one generation of a partition's claim, with the partition's checkpoint and
// counters as that generation's owner last saved them. Generation g+1 is claimed by inserting
// its record, which only one process can do; after that only its owner writes it. The newest
// generation is the partition's state.
type BackfillLease struct {
	ID         string    `bson:"_id"`
	Migration  string    `bson:"migration"`
	PlanID     string    `bson:"plan_id"`
	Partition  int       `bson:"partition"`
	Generation int64     `bson:"generation"`
	Owner      string    `bson:"owner"`
	ClaimedAt  time.Time `bson:"claimed_at"`
	ExpiresAt  time.Time `bson:"expires_at"`
	UpdatedAt  time.Time `bson:"updated_at"`
	// After is the last key copied (the checkpoint) when HasAfter.
	After    any  `bson:"after,omitempty"`
	HasAfter bool `bson:"has_after"`
	Done     bool `bson:"done"`
	// Pending are the keys of the batch being written when the lease was last saved: a batch
	// announces its keys before it writes, so that whoever claims the partition next converges
	// them again (a crash between a batch's write and its re-check leaves nothing stale).
	Pending []any `bson:"pending,omitempty"`
	// Counters of the partition up to the checkpoint, carried over from generation to
	// generation: documents written, their bytes, dead letters, keys converged again after a
	// batch, and errors retried.
	Copied       int64 `bson:"copied"`
	Bytes        int64 `bson:"bytes"`
	DeadLettered int64 `bson:"dead_lettered"`
	Reconverged  int64 `bson:"reconverged"`
	Errors       int64 `bson:"errors"`
}

// BackfillLeaseID is the _id of a partition's lease of one generation.
func BackfillLeaseID(migration, planID string, partition int, generation int64) string {
	return fmt.Sprintf("%s/%s/%05d/%d", migration, planID, partition, generation)
}

// BackfillRunner is what one process running a backfill last reported about itself.
type BackfillRunner struct {
	ID          string    `bson:"_id" json:"id"`
	Migration   string    `bson:"migration" json:"migration"`
	Owner       string    `bson:"owner" json:"owner"`
	State       string    `bson:"state" json:"state"` // "copying", "paused", "throttled", "waiting", "done"
	Workers     int       `bson:"workers" json:"workers"`
	Leases      int       `bson:"leases" json:"leases"`
	DocsPerSec  float64   `bson:"docs_per_sec" json:"docs_per_sec"`
	BytesPerSec float64   `bson:"bytes_per_sec" json:"bytes_per_sec"`
	RateLimit   float64   `bson:"rate_limit" json:"rate_limit"` // this process's current limit in documents/s; 0 unlimited
	UpdatedAt   time.Time `bson:"updated_at" json:"updated_at"`
}

// CreateBackfillPlan stores a plan and its partitions unless the migration has one already,
// and returns the stored plan and whether it is this one. The partitions go first, the plan
// last: a crash in between leaves partitions no plan names, which nothing reads.
func (c *Catalog) CreateBackfillPlan(ctx context.Context, p BackfillPlan, parts []BackfillPartition) (BackfillPlan, bool, error) {
	if len(parts) > 0 {
		docs := make([]any, len(parts))
		for i := range parts {
			parts[i].Migration, parts[i].PlanID = p.Migration, p.PlanID
			parts[i].ID = fmt.Sprintf("%s/%s/%05d", p.Migration, p.PlanID, parts[i].Index)
			docs[i] = parts[i]
		}
		for start := 0; start < len(docs); start += 25 { // FerretDB: small commands
			end := min(start+25, len(docs))
			if _, err := c.db.Collection(collBackfillPartitions).InsertMany(ctx, docs[start:end]); err != nil && !mongo.IsDuplicateKeyError(err) {
				return BackfillPlan{}, false, fmt.Errorf("storing the backfill partitions of %s: %w", p.Migration, err)
			}
		}
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = c.now().UTC()
	}
	_, err := c.db.Collection(collBackfills).InsertOne(ctx, p)
	if err == nil {
		return p, true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return BackfillPlan{}, false, fmt.Errorf("storing the backfill plan of %s: %w", p.Migration, err)
	}
	// Another process's plan won: drop this one's partitions, which nothing will read.
	_, _ = c.db.Collection(collBackfillPartitions).DeleteMany(ctx, bson.D{{Key: "migration", Value: p.Migration}, {Key: "plan_id", Value: p.PlanID}})
	got, err := c.BackfillPlan(ctx, p.Migration)
	return got, false, err
}

// BackfillPlan returns a migration's backfill plan, or an error wrapping ErrNotFound.
func (c *Catalog) BackfillPlan(ctx context.Context, migration string) (BackfillPlan, error) {
	var p BackfillPlan
	if err := c.db.Collection(collBackfills).FindOne(ctx, bson.D{{Key: "_id", Value: migration}}).Decode(&p); err != nil {
		return p, notFound(err, "backfill plan of "+migration)
	}
	return p, nil
}

// BackfillPartitions returns a plan's partitions by index.
func (c *Catalog) BackfillPartitions(ctx context.Context, migration, planID string) ([]BackfillPartition, error) {
	cur, err := c.db.Collection(collBackfillPartitions).Find(ctx,
		bson.D{{Key: "migration", Value: migration}, {Key: "plan_id", Value: planID}},
		options.Find().SetSort(bson.D{{Key: "index", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading the backfill partitions of %s: %w", migration, err)
	}
	var out []BackfillPartition
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading the backfill partitions of %s: %w", migration, err)
	}
	return out, nil
}

// BackfillLeases returns the newest generation of every partition of a plan that has been
// claimed, by partition index.
func (c *Catalog) BackfillLeases(ctx context.Context, migration, planID string) (map[int]BackfillLease, error) {
	return newestClaims(ctx, c, collBackfillLeases,
		bson.D{{Key: "migration", Value: migration}, {Key: "plan_id", Value: planID}},
		"the backfill leases of "+migration,
		func(l BackfillLease) (int, int64) { return l.Partition, l.Generation })
}

// ClaimBackfillLease inserts a lease generation; ErrConflict means another process inserted
// that generation first.
func (c *Catalog) ClaimBackfillLease(ctx context.Context, l BackfillLease) error {
	l.ID = BackfillLeaseID(l.Migration, l.PlanID, l.Partition, l.Generation)
	return c.claimByInsert(ctx, collBackfillLeases, l,
		fmt.Sprintf("backfill partition %d of %s, generation %d", l.Partition, l.Migration, l.Generation))
}

// SaveBackfillLease writes a lease's mutable fields (expiry, checkpoint, done, counters). Only
// the lease's owner may call it, one call at a time (FerretDB's updates of one document are
// not atomic between concurrent writers).
func (c *Catalog) SaveBackfillLease(ctx context.Context, l BackfillLease) error {
	id := BackfillLeaseID(l.Migration, l.PlanID, l.Partition, l.Generation)
	set := bson.D{
		{Key: "expires_at", Value: l.ExpiresAt}, {Key: "updated_at", Value: l.UpdatedAt},
		{Key: "has_after", Value: l.HasAfter}, {Key: "done", Value: l.Done},
		{Key: "copied", Value: l.Copied}, {Key: "bytes", Value: l.Bytes},
		{Key: "dead_lettered", Value: l.DeadLettered}, {Key: "reconverged", Value: l.Reconverged},
		{Key: "errors", Value: l.Errors},
	}
	if l.HasAfter {
		set = append(set, bson.E{Key: "after", Value: l.After})
	}
	pending := bson.A(l.Pending)
	if pending == nil {
		pending = bson.A{}
	}
	set = append(set, bson.E{Key: "pending", Value: pending})
	return c.saveOwned(ctx, collBackfillLeases, id, l.Owner, set, "backfill lease "+id)
}

// BackfillLeaseExists reports whether a partition's lease of a generation has been claimed.
func (c *Catalog) BackfillLeaseExists(ctx context.Context, migration, planID string, partition int, generation int64) (bool, error) {
	id := BackfillLeaseID(migration, planID, partition, generation)
	return c.claimed(ctx, collBackfillLeases, id, "backfill lease "+id)
}

// ChangeBackfillControl applies change to a backfill's control state as revision n+1, recorded
// in the audit trail with who and why: the audit entry (kind KindBackfill, _id
// "MIGRATION/backfill#REVISION") is inserted first, which only one process can do for a
// revision, and then applied. change returns the new state and the audit entry's Subject, From
// and To, or an error that stops the change. Racing changes are retried, each against the state
// the one before left. It returns the state after the change.
func (c *Catalog) ChangeBackfillControl(ctx context.Context, migration, who, why string,
	change func(BackfillControl) (BackfillControl, AuditEntry, error)) (BackfillControl, error) {
	for attempt := 0; ; attempt++ {
		p, err := c.BackfillPlan(ctx, migration)
		if err != nil {
			return BackfillControl{}, err
		}
		next, e, err := change(p.Control)
		if err != nil {
			return p.Control, err
		}
		now := c.now().UTC()
		next.Revision, next.UpdatedBy, next.UpdatedAt = p.Control.Revision+1, who, now
		e.ID = fmt.Sprintf("%s/backfill#%d", migration, next.Revision)
		e.Migration, e.Kind, e.Who, e.Why, e.At = migration, KindBackfill, who, why, now
		if e.Who == "" {
			e.Who = "unknown"
		}
		e.Control = &next
		_, err = c.db.Collection(collAudit).InsertOne(ctx, e)
		if err == nil {
			return next, c.applyControl(ctx, migration, next)
		}
		if !mongo.IsDuplicateKeyError(err) || attempt >= 20 {
			return p.Control, fmt.Errorf("recording the backfill control change of %s: %w", migration, err)
		}
		// Revision n+1 is claimed by another change: complete it (its claimer may have crashed
		// before applying it) and decide again.
		var other AuditEntry
		if err := c.db.Collection(collAudit).FindOne(ctx, bson.D{{Key: "_id", Value: e.ID}}).Decode(&other); err != nil {
			return p.Control, fmt.Errorf("reading the claimed backfill control change of %s: %w", migration, err)
		}
		if other.Control != nil {
			if err := c.applyControl(ctx, migration, *other.Control); err != nil {
				return p.Control, err
			}
		}
	}
}

// applyControl sets a claimed control state if the plan is still at the revision before it.
func (c *Catalog) applyControl(ctx context.Context, migration string, ctl BackfillControl) error {
	_, err := c.db.Collection(collBackfills).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: migration}, {Key: "control.revision", Value: ctl.Revision - 1}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "control", Value: ctl}}}})
	if err != nil {
		return fmt.Errorf("applying the backfill control change of %s: %w", migration, err)
	}
	return nil
}

// ReportBackfillRunner records what this process's backfill is doing, replacing its last report.
func (c *Catalog) ReportBackfillRunner(ctx context.Context, r BackfillRunner) error {
	r.ID = r.Migration + "/" + r.Owner
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = c.now().UTC()
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ { // a racing first upsert fails once with a duplicate
		_, err = c.db.Collection(collBackfillRunners).ReplaceOne(ctx, bson.D{{Key: "_id", Value: r.ID}}, r, options.Replace().SetUpsert(true))
		if !mongo.IsDuplicateKeyError(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("reporting backfill runner %s: %w", r.ID, err)
	}
	return nil
}

// BackfillRunners returns every runner report of a migration, fresh or not; a reader judges
// freshness by UpdatedAt.
func (c *Catalog) BackfillRunners(ctx context.Context, migration string) ([]BackfillRunner, error) {
	cur, err := c.db.Collection(collBackfillRunners).Find(ctx, bson.D{{Key: "migration", Value: migration}},
		options.Find().SetSort(bson.D{{Key: "owner", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading backfill runners of %s: %w", migration, err)
	}
	var out []BackfillRunner
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading backfill runners of %s: %w", migration, err)
	}
	return out, nil
}

// ProcessID is this process's id in per-process records (progress, lags, backfill runners):
// host, pid and a random suffix.
func (c *Catalog) ProcessID() string { return c.owner }
