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

// Checkpoint is the saved position of one path of a migration (a backfill partition, a change
// stream): the last thing known to be applied, so a restart resumes after it.
type Checkpoint struct {
	Migration string    `bson:"migration"`
	Path      string    `bson:"path"`
	Position  bson.Raw  `bson:"position"`
	UpdatedAt time.Time `bson:"updated_at"`
}

// SaveCheckpoint stores position (any BSON-encodable value) for a path, replacing the last one.
// Save it after the batch it describes has been written: checkpoints are "at least once".
func (c *Catalog) SaveCheckpoint(ctx context.Context, migration, path string, position any) error {
	raw, err := bson.Marshal(bson.D{{Key: "p", Value: position}})
	if err != nil {
		return fmt.Errorf("encoding checkpoint %s/%s: %w", migration, path, err)
	}
	_, err = c.db.Collection(collCheckpoints).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: migration + "/" + path}},
		bson.D{{Key: "$set", Value: bson.D{
			{Key: "migration", Value: migration}, {Key: "path", Value: path},
			{Key: "position", Value: bson.Raw(raw)}, {Key: "updated_at", Value: c.now().UTC()},
		}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("saving checkpoint %s/%s: %w", migration, path, err)
	}
	return nil
}

// LoadCheckpoint decodes a path's saved position into out (a pointer); it reports false when
// none was saved.
func (c *Catalog) LoadCheckpoint(ctx context.Context, migration, path string, out any) (bool, error) {
	var cp Checkpoint
	err := c.db.Collection(collCheckpoints).FindOne(ctx, bson.D{{Key: "_id", Value: migration + "/" + path}}).Decode(&cp)
	if err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return false, nil
		}
		return false, fmt.Errorf("loading checkpoint %s/%s: %w", migration, path, err)
	}
	v, err := cp.Position.LookupErr("p")
	if err != nil {
		return false, fmt.Errorf("checkpoint %s/%s has no position: %w", migration, path, err)
	}
	if err := v.Unmarshal(out); err != nil {
		return false, fmt.Errorf("decoding checkpoint %s/%s: %w", migration, path, err)
	}
	return true, nil
}

// AddProgress adds deltas to a path's counters (documents copied, converged, …). Each
// process keeps its own record, so no two processes update the same document and no increment
// is lost even on stores whose $inc is not atomic; Progress sums them.
func (c *Catalog) AddProgress(ctx context.Context, migration, path string, deltas map[string]int64) error {
	inc := bson.D{}
	for k, v := range deltas {
		inc = append(inc, bson.E{Key: "counters." + k, Value: v})
	}
	update := bson.D{{Key: "$set", Value: bson.D{
		{Key: "migration", Value: migration}, {Key: "path", Value: path},
		{Key: "owner", Value: c.owner}, {Key: "updated_at", Value: c.now().UTC()},
	}}}
	if len(inc) > 0 {
		update = append(update, bson.E{Key: "$inc", Value: inc})
	}
	c.progressMu.Lock()
	defer c.progressMu.Unlock()
	_, err := c.db.Collection(collProgress).UpdateOne(ctx, bson.D{{Key: "_id", Value: migration + "/" + path + "/" + c.owner}}, update, options.UpdateOne().SetUpsert(true))
	if err != nil {
		return fmt.Errorf("adding progress %s/%s: %w", migration, path, err)
	}
	return nil
}

// Progress returns a path's counters summed over every process (empty when none were added).
func (c *Catalog) Progress(ctx context.Context, migration, path string) (map[string]int64, error) {
	cur, err := c.db.Collection(collProgress).Find(ctx, bson.D{{Key: "migration", Value: migration}, {Key: "path", Value: path}})
	if err != nil {
		return nil, fmt.Errorf("reading progress %s/%s: %w", migration, path, err)
	}
	var docs []struct {
		Counters map[string]int64 `bson:"counters"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("reading progress %s/%s: %w", migration, path, err)
	}
	sum := map[string]int64{}
	for _, d := range docs {
		for k, v := range d.Counters {
			sum[k] += v
		}
	}
	return sum, nil
}

// Mismatch is one difference found between transform(old) and new for a key.
type Mismatch struct {
	ID         bson.ObjectID `bson:"_id,omitempty"`
	Migration  string        `bson:"migration"`
	Key        any           `bson:"key"`
	Source     string        `bson:"source"` // who found it: "verify", "shadow-read", …
	Diff       []string      `bson:"diff"`   // field-level differences, one per path
	FoundAt    time.Time     `bson:"found_at"`
	RepairedAt *time.Time    `bson:"repaired_at,omitempty"`
}

// RecordMismatch appends a mismatch and returns its id.
func (c *Catalog) RecordMismatch(ctx context.Context, m Mismatch) (bson.ObjectID, error) {
	m.ID = bson.NewObjectID()
	if m.FoundAt.IsZero() {
		m.FoundAt = c.now().UTC()
	}
	if _, err := c.db.Collection(collMismatches).InsertOne(ctx, m); err != nil {
		return m.ID, fmt.Errorf("recording mismatch of %s: %w", m.Migration, err)
	}
	return m.ID, nil
}

// MarkRepaired records that a mismatch was repaired.
func (c *Catalog) MarkRepaired(ctx context.Context, id bson.ObjectID) error {
	res, err := c.db.Collection(collMismatches).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "repaired_at", Value: c.now().UTC()}}}})
	if err != nil {
		return fmt.Errorf("marking mismatch %s repaired: %w", id.Hex(), err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("mismatch %s: %w", id.Hex(), ErrNotFound)
	}
	return nil
}

// Mismatches returns a migration's mismatches, oldest first, at most limit (0: all).
func (c *Catalog) Mismatches(ctx context.Context, migration string, limit int64) ([]Mismatch, error) {
	opts := options.Find().SetSort(bson.D{{Key: "found_at", Value: 1}, {Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(limit)
	}
	cur, err := c.db.Collection(collMismatches).Find(ctx, bson.D{{Key: "migration", Value: migration}}, opts)
	if err != nil {
		return nil, fmt.Errorf("reading mismatches of %s: %w", migration, err)
	}
	var out []Mismatch
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading mismatches of %s: %w", migration, err)
	}
	return out, nil
}

// Report is a stored report (verification, validation, …) as the text or JSON it was shown in.
type Report struct {
	ID        bson.ObjectID `bson:"_id,omitempty"`
	Migration string        `bson:"migration"`
	Kind      string        `bson:"kind"`
	Content   string        `bson:"content"`
	At        time.Time     `bson:"at"`
}

// SaveReport stores a report and returns its id.
func (c *Catalog) SaveReport(ctx context.Context, r Report) (bson.ObjectID, error) {
	r.ID = bson.NewObjectID()
	if r.At.IsZero() {
		r.At = c.now().UTC()
	}
	if _, err := c.db.Collection(collReports).InsertOne(ctx, r); err != nil {
		return r.ID, fmt.Errorf("saving %s report of %s: %w", r.Kind, r.Migration, err)
	}
	return r.ID, nil
}

// Reports returns a migration's reports of one kind, newest first, at most limit (0: all).
func (c *Catalog) Reports(ctx context.Context, migration, kind string, limit int64) ([]Report, error) {
	opts := options.Find().SetSort(bson.D{{Key: "at", Value: -1}, {Key: "_id", Value: -1}})
	if limit > 0 {
		opts.SetLimit(limit)
	}
	cur, err := c.db.Collection(collReports).Find(ctx, bson.D{{Key: "migration", Value: migration}, {Key: "kind", Value: kind}}, opts)
	if err != nil {
		return nil, fmt.Errorf("reading %s reports of %s: %w", kind, migration, err)
	}
	var out []Report
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading %s reports of %s: %w", kind, migration, err)
	}
	return out, nil
}
