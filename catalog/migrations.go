package catalog

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Migration is one migration's current state. Revision counts the changes made to it; every
// change (spec version, phase, flags) is first claimed by inserting the audit entry with _id
// "NAME#REVISION", which a unique _id lets only one process do, and then applied.
type Migration struct {
	Name        string `bson:"_id"`
	SpecVersion string `bson:"spec_version"`
	Phase       string `bson:"phase"`
	// Flags holds the migration's other flags (read_source, shadow_read_percent, write_block)
	// as the strings package flags parses; a flag never set is absent. The catalog does not
	// interpret them.
	Flags     map[string]string `bson:"flags,omitempty"`
	Revision  int64             `bson:"revision"`
	CreatedAt time.Time         `bson:"created_at"`
	UpdatedAt time.Time         `bson:"updated_at"`
}

// SpecVersion is one stored version of a migration's spec.
type SpecVersion struct {
	Migration string    `bson:"migration"`
	Version   string    `bson:"version"`
	Content   string    `bson:"content"`
	CreatedAt time.Time `bson:"created_at"`
}

// AuditEntry records one change: who made it, when, why, and the value before and after.
type AuditEntry struct {
	ID        string    `bson:"_id"`
	Migration string    `bson:"migration"`
	Kind      string    `bson:"kind"` // "spec", "phase", "flags", "backfill"
	Subject   string    `bson:"subject,omitempty"`
	From      string    `bson:"from"`
	To        string    `bson:"to"`
	Who       string    `bson:"who"`
	Why       string    `bson:"why"`
	At        time.Time `bson:"at"`
	Revision  int64     `bson:"revision,omitempty"` // the migration revision this change created
	// Changes lists every flag a "flags" change set, with its value before and after; From, To
	// and Subject then summarize them.
	Changes []FlagChange `bson:"changes,omitempty"`
	// Control is the backfill control state a KindBackfill change set.
	Control *BackfillControl `bson:"control,omitempty"`
}

// PhaseOff is the phase of a migration that has just been registered.
const PhaseOff = "off"

// DefaultFlags returns the flags a migration is registered with: everything on the old store
// (the same values as package flags' Defaults).
func DefaultFlags() map[string]string {
	return map[string]string{"read_source": "old", "shadow_read_percent": "0", "write_block": "false"}
}

// fieldOf names the migrations field a change kind sets.
var fieldOf = map[string]string{"spec": "spec_version", "phase": "phase"}

// RegisterSpec stores a spec version and makes it the migration's current one, creating the
// migration (in phase off) on first use. It reports whether the current version changed; a
// change is written to the audit trail.
func (c *Catalog) RegisterSpec(ctx context.Context, migration, version, content, who string) (bool, error) {
	now := c.now().UTC()
	_, err := c.db.Collection(collSpecs).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: migration + "@" + version}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{
			{Key: "migration", Value: migration}, {Key: "version", Value: version},
			{Key: "content", Value: content}, {Key: "created_at", Value: now},
		}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return false, fmt.Errorf("storing spec %s@%s: %w", migration, version, err)
	}
	_, err = c.db.Collection(collMigrations).InsertOne(ctx, Migration{
		Name: migration, Phase: PhaseOff, Flags: DefaultFlags(), CreatedAt: now, UpdatedAt: now,
	})
	if err != nil && !mongo.IsDuplicateKeyError(err) {
		return false, fmt.Errorf("creating migration %s: %w", migration, err)
	}
	m, err := c.Migration(ctx, migration)
	if err != nil {
		return false, err
	}
	if m.SpecVersion == version {
		return false, nil
	}
	err = c.change(ctx, m, AuditEntry{Kind: "spec", From: m.SpecVersion, To: version, Who: who, Why: "spec registered"})
	return err == nil, err
}

// Spec returns a stored spec version.
func (c *Catalog) Spec(ctx context.Context, migration, version string) (SpecVersion, error) {
	var s SpecVersion
	err := c.db.Collection(collSpecs).FindOne(ctx, bson.D{{Key: "_id", Value: migration + "@" + version}}).Decode(&s)
	if err != nil {
		return s, notFound(err, "spec "+migration+"@"+version)
	}
	return s, nil
}

// Migration returns a migration's current state.
func (c *Catalog) Migration(ctx context.Context, name string) (Migration, error) {
	var m Migration
	if err := c.db.Collection(collMigrations).FindOne(ctx, bson.D{{Key: "_id", Value: name}}).Decode(&m); err != nil {
		return m, notFound(err, "migration "+name)
	}
	return m, nil
}

// SetPhase moves a migration from phase from to phase to, only if it is still in from, and
// records who did it and why. Whether the move is allowed is the caller's decision (package
// flags); the catalog only guarantees that of several racing moves exactly one succeeds, the
// others failing with ErrConflict.
func (c *Catalog) SetPhase(ctx context.Context, migration, from, to, who, why string) error {
	m, err := c.Migration(ctx, migration)
	if err != nil {
		return err
	}
	if m.Phase != from {
		return fmt.Errorf("moving %s from phase %s to %s: it is in phase %s: %w", migration, from, to, m.Phase, ErrConflict)
	}
	return c.change(ctx, m, AuditEntry{Kind: "phase", From: from, To: to, Who: who, Why: why})
}

// change claims revision m.Revision+1 by inserting the audit entry under a unique _id, then
// applies it. Only the process whose insert succeeds applies the change, so the claim works
// even on stores without atomic read-modify-write (FerretDB); a claim whose apply was cut short
// (a crash between the two writes) is completed by whoever next finds it.
func (c *Catalog) change(ctx context.Context, m Migration, e AuditEntry) error {
	e.Migration = m.Name
	e.Revision = m.Revision + 1
	e.ID = fmt.Sprintf("%s#%d", m.Name, e.Revision)
	if e.At.IsZero() {
		e.At = c.now().UTC()
	}
	if e.Who == "" {
		e.Who = "unknown"
	}
	if _, err := c.db.Collection(collAudit).InsertOne(ctx, e); err != nil {
		if !mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("recording %s change of %s: %w", e.Kind, m.Name, err)
		}
		if err := c.completeClaim(ctx, m); err != nil {
			return err
		}
		return fmt.Errorf("changing %s of %s from %q to %q: %w", e.Kind, m.Name, e.From, e.To, ErrConflict)
	}
	return c.apply(ctx, e)
}

// apply sets the field a claimed audit entry changes, if the migration is still at the
// revision before it.
func (c *Catalog) apply(ctx context.Context, e AuditEntry) error {
	set := bson.D{}
	if e.Kind == kindFlags {
		for _, ch := range e.Changes {
			set = append(set, bson.E{Key: flagField(ch.Flag), Value: ch.To})
		}
	} else {
		set = append(set, bson.E{Key: fieldOf[e.Kind], Value: e.To})
	}
	set = append(set, bson.E{Key: "revision", Value: e.Revision}, bson.E{Key: "updated_at", Value: e.At})
	_, err := c.db.Collection(collMigrations).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: e.Migration}, {Key: "revision", Value: e.Revision - 1}},
		bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("applying %s change of %s: %w", e.Kind, e.Migration, err)
	}
	return nil
}

// completeClaim applies the claimed change that follows m's revision, if any.
func (c *Catalog) completeClaim(ctx context.Context, m Migration) error {
	var e AuditEntry
	err := c.db.Collection(collAudit).FindOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("%s#%d", m.Name, m.Revision+1)}}).Decode(&e)
	if err != nil {
		return fmt.Errorf("reading claimed change of %s: %w", m.Name, err)
	}
	return c.apply(ctx, e)
}

// Migrations returns every migration's current state, ordered by name.
func (c *Catalog) Migrations(ctx context.Context) ([]Migration, error) {
	cur, err := c.db.Collection(collMigrations).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	var out []Migration
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	return out, nil
}

// AuditNewest returns a migration's most recent audit entries, newest first, at most limit
// (0: all).
func (c *Catalog) AuditNewest(ctx context.Context, migration string, limit int64) ([]AuditEntry, error) {
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}})
	if limit > 0 {
		opts.SetLimit(limit)
	}
	cur, err := c.db.Collection(collAudit).Find(ctx, bson.D{{Key: "migration", Value: migration}}, opts)
	if err != nil {
		return nil, fmt.Errorf("reading audit trail of %s: %w", migration, err)
	}
	var out []AuditEntry
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading audit trail of %s: %w", migration, err)
	}
	return out, nil
}

// Audit returns a migration's audit trail, oldest first, at most limit entries (0: all).
func (c *Catalog) Audit(ctx context.Context, migration string, limit int64) ([]AuditEntry, error) {
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(limit)
	}
	cur, err := c.db.Collection(collAudit).Find(ctx, bson.D{{Key: "migration", Value: migration}}, opts)
	if err != nil {
		return nil, fmt.Errorf("reading audit trail of %s: %w", migration, err)
	}
	var out []AuditEntry
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading audit trail of %s: %w", migration, err)
	}
	return out, nil
}

// RecordAudit appends an entry that changes no migration field (a flag change, say).
func (c *Catalog) RecordAudit(ctx context.Context, e AuditEntry) error {
	e.ID = bson.NewObjectID().Hex()
	if e.At.IsZero() {
		e.At = c.now().UTC()
	}
	if e.Who == "" {
		e.Who = "unknown"
	}
	if _, err := c.db.Collection(collAudit).InsertOne(ctx, e); err != nil {
		return fmt.Errorf("writing audit entry for %s: %w", e.Migration, err)
	}
	return nil
}
