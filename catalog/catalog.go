// Package catalog is tandem's own metadata, kept in a MongoDB database (tandem_meta by
// default, on the source deployment): migrations and their spec versions, phase changes with an
// audit trail, checkpoints, progress, mismatches, dead letters and reports.
//
// Several tandem processes may share one catalog. Every record has a deterministic _id and is
// written with an upsert or a compare-and-set update, so concurrent writers never duplicate a
// record and a phase change that raced another one fails with ErrConflict instead of
// overwriting it. The catalog needs no transactions (FerretDB has none).
package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// SchemaVersion is the layout of the catalog this code reads and writes. A catalog written by
// a newer tandem is refused rather than misread.
const SchemaVersion = 1

// DefaultDatabase is the catalog database when none is configured.
const DefaultDatabase = "tandem_meta"

// Sentinel errors.
var (
	// ErrNotFound means the record does not exist.
	ErrNotFound = errors.New("not found in the catalog")
	// ErrConflict means a compare-and-set lost: another process changed the record first.
	ErrConflict = errors.New("catalog record changed concurrently")
	// ErrSchemaTooNew means the catalog was written by a newer tandem.
	ErrSchemaTooNew = errors.New("catalog schema is newer than this tandem")
)

// Collection names.
const (
	collMeta        = "schema"
	collMigrations  = "migrations"
	collSpecs       = "specs"
	collAudit       = "audit"
	collCheckpoints = "checkpoints"
	collProgress    = "progress"
	collMismatches  = "mismatches"
	collDeadLetters = "dead_letters"
	collReports     = "reports"
)

// Catalog reads and writes tandem's metadata. It is safe for concurrent use.
type Catalog struct {
	db         *mongo.Database
	now        func() time.Time
	owner      string     // this process's id in per-process records (progress)
	progressMu sync.Mutex // serializes this process's progress increments
}

// Option configures Open.
type Option func(*openConfig)

type openConfig struct {
	database string
	now      func() time.Time
}

// WithDatabase names the catalog database, overriding DefaultDatabase.
func WithDatabase(name string) Option { return func(c *openConfig) { c.database = name } }

// WithClock sets the time source, overriding time.Now (for tests).
func WithClock(now func() time.Time) Option { return func(c *openConfig) { c.now = now } }

// Open prepares the catalog on client: it records the schema version on first use, creates the
// indexes it needs (idempotently, so several processes may open it at once) and refuses a
// catalog whose schema is newer than SchemaVersion.
func Open(ctx context.Context, client *mongo.Client, opts ...Option) (*Catalog, error) {
	cfg := openConfig{database: DefaultDatabase, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.database == "" {
		return nil, errors.New("catalog: empty database name")
	}
	c := &Catalog{db: client.Database(cfg.database), now: cfg.now, owner: processID()}
	if err := c.ensureSchema(ctx); err != nil {
		return nil, fmt.Errorf("opening catalog %s: %w", cfg.database, err)
	}
	return c, nil
}

func (c *Catalog) ensureSchema(ctx context.Context) error {
	// A catalog opened before is only read: a process restarted next to busy ones writes
	// nothing here (on FerretDB's SQLite a needless write can fail with "database is locked").
	meta := c.db.Collection(collMeta)
	var doc struct {
		Version int `bson:"version"`
	}
	err := meta.FindOne(ctx, bson.D{{Key: "_id", Value: "schema"}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		_, err = meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: "schema"}},
			bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "version", Value: SchemaVersion}, {Key: "created_at", Value: c.now().UTC()}}}},
			options.UpdateOne().SetUpsert(true))
		if err != nil && !mongo.IsDuplicateKeyError(err) { // two processes racing to create it
			return fmt.Errorf("recording schema version: %w", err)
		}
		err = meta.FindOne(ctx, bson.D{{Key: "_id", Value: "schema"}}).Decode(&doc)
	}
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if doc.Version > SchemaVersion {
		return fmt.Errorf("%w: catalog has schema %d, this tandem knows up to %d", ErrSchemaTooNew, doc.Version, SchemaVersion)
	}
	indexes := map[string][]mongo.IndexModel{
		collAudit:              {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "at", Value: 1}}}},
		collSpecs:              {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "created_at", Value: 1}}}},
		collMismatches:         {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "found_at", Value: 1}}}},
		collDeadLetters:        {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "spec_version", Value: 1}}}},
		collProgress:           {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "path", Value: 1}}}},
		collReports:            {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "at", Value: 1}}}},
		collLags:               {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "component", Value: 1}}}},
		collBackfillPartitions: {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "plan_id", Value: 1}, {Key: "index", Value: 1}}}},
		collBackfillLeases:     {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "plan_id", Value: 1}, {Key: "partition", Value: 1}}}},
		collBackfillRunners:    {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "owner", Value: 1}}}},
		collCDCStreams:         {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "path", Value: 1}}}},
		collCDCLeases:          {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "path", Value: 1}, {Key: "generation", Value: 1}}}},
		collVerifyRuns:         {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "seq", Value: 1}}}},
		collVerifyGenerations:  {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "run_id", Value: 1}}}},
		collVerifyTasks:        {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "run_id", Value: 1}, {Key: "generation", Value: 1}}}},
		collVerifyLeases:       {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "run_id", Value: 1}, {Key: "generation", Value: 1}}}},
		collVerifyMismatches:   {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "run_id", Value: 1}, {Key: "state", Value: 1}}}},
		collVerifyDrift:        {{Keys: bson.D{{Key: "migration", Value: 1}, {Key: "run_id", Value: 1}, {Key: "at", Value: 1}}}},
	}
	for coll, models := range indexes {
		if err := c.ensureIndexes(ctx, coll, models); err != nil {
			return err
		}
	}
	return nil
}

// ensureIndexes creates those of models that coll does not have yet (compared by keys).
func (c *Catalog) ensureIndexes(ctx context.Context, coll string, models []mongo.IndexModel) error {
	view := c.db.Collection(coll).Indexes()
	have, err := view.ListSpecifications(ctx)
	if err != nil && !isNamespaceNotFound(err) {
		return fmt.Errorf("listing indexes of %s: %w", coll, err)
	}
	var missing []mongo.IndexModel
	for _, m := range models {
		keys, err := bson.Marshal(m.Keys)
		if err != nil {
			return fmt.Errorf("index keys of %s: %w", coll, err)
		}
		if !slices.ContainsFunc(have, func(s mongo.IndexSpecification) bool { return bytes.Equal(s.KeysDocument, keys) }) {
			missing = append(missing, m)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := view.CreateMany(ctx, missing); err != nil {
		return fmt.Errorf("creating indexes on %s: %w", coll, err)
	}
	return nil
}

// isNamespaceNotFound reports a command error on a collection that does not exist (code 26).
func isNamespaceNotFound(err error) bool {
	var ce mongo.CommandError
	return errors.As(err, &ce) && ce.Code == 26
}

// processID names this process in per-process records: host, pid and a random suffix.
func processID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), bson.NewObjectID().Hex()[18:])
}

// Database returns the catalog's database name.
func (c *Catalog) Database() string { return c.db.Name() }

// notFound turns the driver's no-documents error into ErrNotFound with a description.
func notFound(err error, what string) error {
	if errors.Is(err, mongo.ErrNoDocuments) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}
