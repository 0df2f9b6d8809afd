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

// collLags holds change-lag records.
const collLags = "lags"

// Lag is how far one component of one process (a change-stream tailer, a journal consumer) is
// behind the changes it follows, as it last reported. A record is never removed: a reader
// judges freshness by UpdatedAt, so a process that stopped reporting stops counting.
type Lag struct {
	Migration string        `bson:"migration"`
	Component string        `bson:"component"` // e.g. "cdc-forward", "cdc-reverse"
	Owner     string        `bson:"owner"`     // the reporting process (host:pid:suffix)
	Lag       time.Duration `bson:"lag_ns"`
	UpdatedAt time.Time     `bson:"updated_at"`
}

// ReportLag records the current lag of a component of this process, replacing its last report
// (one record per migration, component and process).
func (c *Catalog) ReportLag(ctx context.Context, migration, component string, lag time.Duration) error {
	switch {
	case migration == "":
		return errors.New("reporting change lag: empty migration name")
	case component == "":
		return fmt.Errorf("reporting change lag of %s: empty component name", migration)
	case lag < 0:
		return fmt.Errorf("reporting change lag of %s/%s: negative lag %s", migration, component, lag)
	}
	var err error
	// As for dead letters: a racing first upsert may fail with a duplicate key and succeed as
	// an update on the second try.
	for attempt := 0; attempt < 2; attempt++ {
		_, err = c.db.Collection(collLags).UpdateOne(ctx,
			bson.D{{Key: "_id", Value: migration + "/" + component + "/" + c.owner}},
			bson.D{{Key: "$set", Value: bson.D{
				{Key: "migration", Value: migration}, {Key: "component", Value: component},
				{Key: "owner", Value: c.owner}, {Key: "lag_ns", Value: int64(lag)},
				{Key: "updated_at", Value: c.now().UTC()},
			}}},
			options.UpdateOne().SetUpsert(true))
		if !mongo.IsDuplicateKeyError(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("reporting change lag of %s/%s: %w", migration, component, err)
	}
	return nil
}

// Lags returns every lag record of a migration, fresh or not, ordered by component and owner.
func (c *Catalog) Lags(ctx context.Context, migration string) ([]Lag, error) {
	cur, err := c.db.Collection(collLags).Find(ctx, bson.D{{Key: "migration", Value: migration}},
		options.Find().SetSort(bson.D{{Key: "component", Value: 1}, {Key: "owner", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading change lags of %s: %w", migration, err)
	}
	var out []Lag
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading change lags of %s: %w", migration, err)
	}
	return out, nil
}
