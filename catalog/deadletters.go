package catalog

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// DeadLetter is a document that could not be transformed or written. It is kept, never
// dropped, until a converge of its key succeeds — typically after the spec is fixed, which is
// why it records the spec version it failed under.
type DeadLetter struct {
	Migration   string    `bson:"migration"`
	KeyString   string    `bson:"key_string"` // canonical rendering of Key (adapters.KeyString)
	Key         any       `bson:"key"`
	Direction   string    `bson:"direction"` // "forward" or "reverse"
	Step        string    `bson:"step"`      // the failing step, e.g. "forward[2] convert age", or "write"
	Reason      string    `bson:"reason"`
	SpecVersion string    `bson:"spec_version"`
	Attempts    int64     `bson:"attempts"`
	FirstSeen   time.Time `bson:"first_seen"`
	LastSeen    time.Time `bson:"last_seen"`
}

func deadLetterID(migration, direction, keyString string) string {
	return migration + "/" + direction + "/" + keyString
}

// AddDeadLetter records (or updates: one record per migration, direction and key) a failure.
func (c *Catalog) AddDeadLetter(ctx context.Context, d DeadLetter) error {
	var err error
	// Two processes may race to create the record; the loser's upsert fails with a duplicate
	// key and succeeds as an update on the second try.
	for attempt := 0; attempt < 2; attempt++ {
		now := c.now().UTC()
		_, err = c.db.Collection(collDeadLetters).UpdateOne(ctx,
			bson.D{{Key: "_id", Value: deadLetterID(d.Migration, d.Direction, d.KeyString)}},
			bson.D{
				{Key: "$setOnInsert", Value: bson.D{{Key: "first_seen", Value: now}}},
				{Key: "$set", Value: bson.D{
					{Key: "migration", Value: d.Migration}, {Key: "key_string", Value: d.KeyString},
					{Key: "key", Value: d.Key}, {Key: "direction", Value: d.Direction},
					{Key: "step", Value: d.Step}, {Key: "reason", Value: d.Reason},
					{Key: "spec_version", Value: d.SpecVersion}, {Key: "last_seen", Value: now},
				}},
				{Key: "$inc", Value: bson.D{{Key: "attempts", Value: int64(1)}}},
			},
			options.UpdateOne().SetUpsert(true))
		if !mongo.IsDuplicateKeyError(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("recording dead letter %s %s: %w", d.Migration, d.KeyString, err)
	}
	return nil
}

// ResolveDeadLetter removes a key's dead letter once it converged; a missing one is no error.
func (c *Catalog) ResolveDeadLetter(ctx context.Context, migration, direction, keyString string) error {
	_, err := c.db.Collection(collDeadLetters).DeleteOne(ctx, bson.D{{Key: "_id", Value: deadLetterID(migration, direction, keyString)}})
	if err != nil {
		return fmt.Errorf("resolving dead letter %s %s: %w", migration, keyString, err)
	}
	return nil
}

// DeadLetterFilter selects dead letters.
type DeadLetterFilter struct {
	// NotSpecVersion keeps only those recorded under another spec version: the ones worth
	// retrying after a spec change. Optional.
	NotSpecVersion string
	// Direction keeps only those of one direction, "forward" or "reverse". Optional; empty
	// means both.
	Direction string
	// Limit caps the result. Optional; 0 means no limit.
	Limit int64
}

// Dead-letter directions.
const (
	DirectionForward = "forward"
	DirectionReverse = "reverse"
)

// checkDirection refuses a direction that is neither empty nor a known one.
func checkDirection(d string) error {
	if d != "" && d != DirectionForward && d != DirectionReverse {
		return fmt.Errorf("dead-letter direction %q: want %q or %q", d, DirectionForward, DirectionReverse)
	}
	return nil
}

// DeadLetters returns a migration's dead letters, oldest first.
func (c *Catalog) DeadLetters(ctx context.Context, migration string, f DeadLetterFilter) ([]DeadLetter, error) {
	if err := checkDirection(f.Direction); err != nil {
		return nil, fmt.Errorf("reading dead letters of %s: %w", migration, err)
	}
	filter := bson.D{{Key: "migration", Value: migration}}
	if f.Direction != "" {
		filter = append(filter, bson.E{Key: "direction", Value: f.Direction})
	}
	if f.NotSpecVersion != "" {
		filter = append(filter, bson.E{Key: "spec_version", Value: bson.D{{Key: "$ne", Value: f.NotSpecVersion}}})
	}
	opts := options.Find().SetSort(bson.D{{Key: "first_seen", Value: 1}, {Key: "_id", Value: 1}})
	if f.Limit > 0 {
		opts.SetLimit(f.Limit)
	}
	cur, err := c.db.Collection(collDeadLetters).Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("reading dead letters of %s: %w", migration, err)
	}
	var out []DeadLetter
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading dead letters of %s: %w", migration, err)
	}
	return out, nil
}

// CountDeadLetters returns how many dead letters a migration has.
func (c *Catalog) CountDeadLetters(ctx context.Context, migration string) (int64, error) {
	n, err := c.db.Collection(collDeadLetters).CountDocuments(ctx, bson.D{{Key: "migration", Value: migration}})
	if err != nil {
		return 0, fmt.Errorf("counting dead letters of %s: %w", migration, err)
	}
	return n, nil
}

// CountDeadLettersByDirection returns how many dead letters a migration has in one direction,
// "forward" or "reverse".
func (c *Catalog) CountDeadLettersByDirection(ctx context.Context, migration, direction string) (int64, error) {
	if direction != DirectionForward && direction != DirectionReverse {
		return 0, fmt.Errorf("counting dead letters of %s: direction %q: want %q or %q", migration, direction, DirectionForward, DirectionReverse)
	}
	n, err := c.db.Collection(collDeadLetters).CountDocuments(ctx, bson.D{{Key: "migration", Value: migration}, {Key: "direction", Value: direction}})
	if err != nil {
		return 0, fmt.Errorf("counting %s dead letters of %s: %w", direction, migration, err)
	}
	return n, nil
}
