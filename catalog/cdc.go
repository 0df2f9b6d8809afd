package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// collCDCStreams holds one record per change-capture path of a migration: its checkpoint and
// its state.
const collCDCStreams = "cdc_streams"

// CDCFormat is the layout of CDCStream.Position this tandem writes. A record of a newer format
// is refused (ErrCDCFormatTooNew): an older tandem must not resume from a position it cannot
// read, nor overwrite it.
const CDCFormat = 1

// ErrCDCFormatTooNew means a change-capture checkpoint was written by a newer tandem.
var ErrCDCFormatTooNew = errors.New("change-capture checkpoint written by a newer tandem")

// The states of a change-capture path (CDCStream.State).
const (
	// CDCRunning: the path follows its source from Position.
	CDCRunning = "running"
	// CDCInvalidated: the followed collection was dropped or renamed, or its stream was
	// otherwise invalidated; the path stays stopped until an operator resyncs it.
	CDCInvalidated = "invalidated"
	// CDCHistoryLost: the source no longer holds Position; only a new copy from a fresh
	// position makes the target whole (Detail names the command).
	CDCHistoryLost = "history_lost"
	// CDCBadEvent: the source delivered an event the path cannot converge (no usable key);
	// the checkpoint stays before it.
	CDCBadEvent = "bad_event"
)

// CDCStream is a change-capture path's record: the position after the last batch it
// converged, and its state. Only the path's tailer writes it, after each batch has landed.
type CDCStream struct {
	ID        string `bson:"_id"` // MIGRATION/PATH
	Migration string `bson:"migration"`
	Path      string `bson:"path"`   // "forward-cdc", "reverse-cdc"
	Source    string `bson:"source"` // the source's name, e.g. "mongo change stream app.users"
	Format    int    `bson:"format"`
	// Position is the source's resume point (cdc.Position); nil before the first one.
	Position bson.Raw `bson:"position,omitempty"`
	// At is the source time of the newest change converged (zero before any).
	At time.Time `bson:"at,omitzero"`
	// Applied counts the changes converged up to Position, over every run.
	Applied   int64     `bson:"applied"`
	State     string    `bson:"state"`
	Detail    string    `bson:"detail,omitempty"` // why the state, and the way out
	StateAt   time.Time `bson:"state_at"`
	UpdatedBy string    `bson:"updated_by"`
	UpdatedAt time.Time `bson:"updated_at"`
}

func cdcStreamID(migration, path string) string { return migration + "/" + path }

// CDCStream returns a path's record, or an error wrapping ErrNotFound when it has none, or
// ErrCDCFormatTooNew when a newer tandem wrote it.
func (c *Catalog) CDCStream(ctx context.Context, migration, path string) (CDCStream, error) {
	var s CDCStream
	err := c.db.Collection(collCDCStreams).FindOne(ctx, bson.D{{Key: "_id", Value: cdcStreamID(migration, path)}}).Decode(&s)
	if err != nil {
		return CDCStream{}, notFound(err, fmt.Sprintf("change-capture checkpoint %s/%s", migration, path))
	}
	if s.Format > CDCFormat {
		return CDCStream{}, fmt.Errorf("change-capture checkpoint %s/%s has format %d, this tandem reads up to %d: %w",
			migration, path, s.Format, CDCFormat, ErrCDCFormatTooNew)
	}
	return s, nil
}

// CDCStreams returns every change-capture record of a migration.
func (c *Catalog) CDCStreams(ctx context.Context, migration string) ([]CDCStream, error) {
	cur, err := c.db.Collection(collCDCStreams).Find(ctx, bson.D{{Key: "migration", Value: migration}},
		options.Find().SetSort(bson.D{{Key: "path", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading change-capture checkpoints of %s: %w", migration, err)
	}
	var out []CDCStream
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading change-capture checkpoints of %s: %w", migration, err)
	}
	return out, nil
}

// StartCDCStream records the position a path starts from, in state running, unless the path
// has a record already; it returns the record that holds afterwards and whether it is this
// one. Tailers call it before the backfill starts, so that nothing written between the two is
// missed. Two processes racing: one insert wins, both return the winner's.
func (c *Catalog) StartCDCStream(ctx context.Context, migration, path, source string, pos bson.Raw) (CDCStream, bool, error) {
	if migration == "" || path == "" {
		return CDCStream{}, false, fmt.Errorf("starting change capture: empty migration (%q) or path (%q)", migration, path)
	}
	now := c.now().UTC()
	s := CDCStream{
		ID: cdcStreamID(migration, path), Migration: migration, Path: path, Source: source, Format: CDCFormat,
		Position: pos, State: CDCRunning, StateAt: now, UpdatedBy: c.owner, UpdatedAt: now,
	}
	_, err := c.db.Collection(collCDCStreams).InsertOne(ctx, s)
	if err == nil {
		return s, true, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return CDCStream{}, false, fmt.Errorf("starting change capture %s/%s: %w", migration, path, err)
	}
	got, err := c.CDCStream(ctx, migration, path)
	return got, false, err
}

// ResetCDCStream replaces a path's record with a fresh start at pos, in state running, keeping
// nothing of the old one but what detail says: the recovery from history lost or an
// invalidated stream, made together with a new copy of the data.
func (c *Catalog) ResetCDCStream(ctx context.Context, migration, path, source string, pos bson.Raw, detail string) (CDCStream, error) {
	if migration == "" || path == "" {
		return CDCStream{}, fmt.Errorf("resetting change capture: empty migration (%q) or path (%q)", migration, path)
	}
	now := c.now().UTC()
	s := CDCStream{
		ID: cdcStreamID(migration, path), Migration: migration, Path: path, Source: source, Format: CDCFormat,
		Position: pos, State: CDCRunning, Detail: detail, StateAt: now, UpdatedBy: c.owner, UpdatedAt: now,
	}
	_, err := c.db.Collection(collCDCStreams).ReplaceOne(ctx, bson.D{{Key: "_id", Value: s.ID}}, s, options.Replace().SetUpsert(true))
	if err != nil {
		return CDCStream{}, fmt.Errorf("resetting change capture %s/%s: %w", migration, path, err)
	}
	return s, nil
}

// SaveCDCPosition moves a path's checkpoint to pos after a batch of applied changes landed:
// applied more changes, the newest of them from at (zero: keep the last). Call it only once
// every change up to pos has been converged.
func (c *Catalog) SaveCDCPosition(ctx context.Context, migration, path string, pos bson.Raw, at time.Time, applied int64) error {
	set := bson.D{
		{Key: "position", Value: pos}, {Key: "format", Value: CDCFormat},
		{Key: "updated_by", Value: c.owner}, {Key: "updated_at", Value: c.now().UTC()},
	}
	if !at.IsZero() {
		set = append(set, bson.E{Key: "at", Value: at.UTC()})
	}
	update := bson.D{{Key: "$set", Value: set}}
	if applied > 0 {
		update = append(update, bson.E{Key: "$inc", Value: bson.D{{Key: "applied", Value: applied}}})
	}
	res, err := c.db.Collection(collCDCStreams).UpdateOne(ctx, bson.D{{Key: "_id", Value: cdcStreamID(migration, path)}}, update)
	if err != nil {
		return fmt.Errorf("saving change-capture checkpoint %s/%s: %w", migration, path, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("saving change-capture checkpoint %s/%s: no record (StartCDCStream first): %w", migration, path, ErrNotFound)
	}
	return nil
}

// SetCDCState records a path's state and why (detail), leaving its position as it is.
func (c *Catalog) SetCDCState(ctx context.Context, migration, path, state, detail string) error {
	now := c.now().UTC()
	res, err := c.db.Collection(collCDCStreams).UpdateOne(ctx, bson.D{{Key: "_id", Value: cdcStreamID(migration, path)}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "state", Value: state}, {Key: "detail", Value: detail}, {Key: "state_at", Value: now},
			{Key: "updated_by", Value: c.owner}, {Key: "updated_at", Value: now},
		}}})
	if err != nil {
		return fmt.Errorf("recording change-capture state %s of %s/%s: %w", state, migration, path, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("recording change-capture state %s of %s/%s: no record: %w", state, migration, path, ErrNotFound)
	}
	return nil
}

// KindCDC is the audit kind of a change-capture resync.
const KindCDC = "cdc"

// collBackfillsRetired keeps the plans RetireBackfillPlan moved aside.
const collBackfillsRetired = "backfills_retired"

// RetireBackfillPlan moves a migration's backfill plan aside (into backfills_retired, under
// MIGRATION/PLAN), so that the next backfill run makes a new plan and copies everything again:
// the recovery when change capture lost its history. The old plan's partitions and leases stay,
// named by its plan id, which nothing reads any more. It reports false when there was no plan.
func (c *Catalog) RetireBackfillPlan(ctx context.Context, migration string) (bool, error) {
	p, err := c.BackfillPlan(ctx, migration)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	doc := bson.D{{Key: "_id", Value: migration + "/" + p.PlanID}, {Key: "plan", Value: p}, {Key: "retired_at", Value: c.now().UTC()}}
	if _, err := c.db.Collection(collBackfillsRetired).InsertOne(ctx, doc); err != nil && !mongo.IsDuplicateKeyError(err) {
		return false, fmt.Errorf("retiring the backfill plan %s of %s: %w", p.PlanID, migration, err)
	}
	if _, err := c.db.Collection(collBackfills).DeleteOne(ctx, bson.D{{Key: "_id", Value: migration}, {Key: "plan_id", Value: p.PlanID}}); err != nil {
		return false, fmt.Errorf("retiring the backfill plan %s of %s: %w", p.PlanID, migration, err)
	}
	return true, nil
}

// ResyncCDCStream is ResetCDCStream recorded in the audit trail (kind cdc, subject the path,
// from the old state, to "running"): who resynced the path, when and why.
func (c *Catalog) ResyncCDCStream(ctx context.Context, migration, path, source string, pos bson.Raw, who, why string) (CDCStream, error) {
	from := "none"
	if old, err := c.CDCStream(ctx, migration, path); err == nil {
		from = old.State
	} else if !errors.Is(err, ErrNotFound) {
		return CDCStream{}, err
	}
	if who == "" {
		who = "unknown"
	}
	now := c.now().UTC()
	e := AuditEntry{Migration: migration, Kind: KindCDC,
		Subject: path, From: from, To: CDCRunning, Who: who, Why: why, At: now}
	if err := c.RecordAudit(ctx, e); err != nil {
		return CDCStream{}, err
	}
	return c.ResetCDCStream(ctx, migration, path, source, pos, fmt.Sprintf("resynced by %s: %s", who, why))
}

// collCDCLeases holds the leases that elect one tailer per change-capture path.
const collCDCLeases = "cdc_leases"

// CDCLease is one generation of a claim on a change-capture path: the holder tails the stream
// until ExpiresAt, renewing it. Generation g+1 is claimed by inserting its record, which only
// one process can do (FerretDB's conditional updates are not atomic between writers, its unique
// _id is); after that only its owner writes it. The newest generation is the path's holder.
type CDCLease struct {
	ID         string    `bson:"_id"` // MIGRATION/PATH/GENERATION
	Migration  string    `bson:"migration"`
	Path       string    `bson:"path"`
	Generation int64     `bson:"generation"`
	Owner      string    `bson:"owner"`
	ClaimedAt  time.Time `bson:"claimed_at"`
	ExpiresAt  time.Time `bson:"expires_at"`
}

// CDCLeaseID is the _id of a path's lease of one generation.
func CDCLeaseID(migration, path string, generation int64) string {
	return fmt.Sprintf("%s/%s/%012d", migration, path, generation)
}

// NewestCDCLease returns a path's lease of the highest generation; false when none was claimed.
func (c *Catalog) NewestCDCLease(ctx context.Context, migration, path string) (CDCLease, bool, error) {
	var l CDCLease
	err := c.db.Collection(collCDCLeases).FindOne(ctx,
		bson.D{{Key: "migration", Value: migration}, {Key: "path", Value: path}},
		options.FindOne().SetSort(bson.D{{Key: "generation", Value: -1}})).Decode(&l)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return CDCLease{}, false, nil
	}
	if err != nil {
		return CDCLease{}, false, fmt.Errorf("reading the change-capture lease of %s/%s: %w", migration, path, err)
	}
	return l, true, nil
}

// ClaimCDCLease inserts a lease generation; ErrConflict means another process claimed that
// generation first.
func (c *Catalog) ClaimCDCLease(ctx context.Context, l CDCLease) error {
	l.ID = CDCLeaseID(l.Migration, l.Path, l.Generation)
	if _, err := c.db.Collection(collCDCLeases).InsertOne(ctx, l); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("claiming change-capture path %s/%s, generation %d: %w", l.Migration, l.Path, l.Generation, ErrConflict)
		}
		return fmt.Errorf("claiming change-capture path %s/%s: %w", l.Migration, l.Path, err)
	}
	return nil
}

// RenewCDCLease moves the expiry of the caller's own lease generation.
func (c *Catalog) RenewCDCLease(ctx context.Context, l CDCLease) error {
	_, err := c.db.Collection(collCDCLeases).UpdateOne(ctx, bson.D{{Key: "_id", Value: CDCLeaseID(l.Migration, l.Path, l.Generation)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expires_at", Value: l.ExpiresAt.UTC()}}}})
	if err != nil {
		return fmt.Errorf("renewing the change-capture lease of %s/%s: %w", l.Migration, l.Path, err)
	}
	return nil
}
