package scaleout_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
)

// The counter job: singleton work that writes numbered records, one after the other, under a
// leader lease. Each record carries the generation it was written under; a new leader carries
// on from the last record written (its checkpoint).
const (
	counterLease = "scaleout/counter"
	counterTTL   = 1500 * time.Millisecond
	counterSkew  = 100 * time.Millisecond
)

// counterRecord is one record of the job, _id the zero-padded sequence number, so that
// inserting a number twice fails.
type counterRecord struct {
	ID         string    `bson:"_id"`
	Seq        int64     `bson:"seq"`
	Generation int64     `bson:"gen"`
	Owner      string    `bson:"owner"`
	IssuedAt   time.Time `bson:"issued_at"` // taken after the context check, before the write
}

// counterStart is what a generation's work recorded when it started.
type counterStart struct {
	Generation int64     `bson:"_id"`
	Owner      string    `bson:"owner"`
	AcquiredAt time.Time `bson:"acquired_at"`
	StartedAt  time.Time `bson:"started_at"`
	From       int64     `bson:"from"` // the last sequence number found
}

// counterJob is a leader child's work.
type counterJob struct {
	db   *mongo.Database
	name string
}

// run writes records from the last one on until ctx ends. A number written already (two
// leaders at once) is recorded in "violations" and fails the run.
func (j counterJob) run(ctx context.Context, l catalog.LeaderLease) error {
	started := time.Now().UTC()
	last, err := lastSeq(ctx, j.db)
	if err != nil {
		return err
	}
	if _, err := j.db.Collection("starts").InsertOne(ctx, counterStart{
		Generation: l.Generation, Owner: j.name, AcquiredAt: l.AcquiredAt, StartedAt: started, From: last,
	}); err != nil {
		return fmt.Errorf("recording the start of generation %d: %w", l.Generation, err)
	}
	for seq := last + 1; ; seq++ {
		if ctx.Err() != nil {
			return nil
		}
		r := counterRecord{ID: fmt.Sprintf("%012d", seq), Seq: seq, Generation: l.Generation, Owner: j.name, IssuedAt: time.Now().UTC()}
		_, err := j.db.Collection("counter").InsertOne(ctx, r)
		if mongo.IsDuplicateKeyError(err) {
			_, _ = j.db.Collection("violations").InsertOne(context.Background(), r)
			return fmt.Errorf("record %d was written already", seq)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("writing record %d: %w", seq, err)
		}
	}
}

// lastSeq is the job's checkpoint: the newest record's number, 0 before the first.
func lastSeq(ctx context.Context, db *mongo.Database) (int64, error) {
	var r counterRecord
	err := db.Collection("counter").FindOne(ctx, bson.D{}, options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}})).Decode(&r)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the last record: %w", err)
	}
	return r.Seq, nil
}

// leaderMain is a contender of the counter job: it runs the job under the lease, forever.
func leaderMain() int {
	log := childLog()
	name, db := os.Getenv(envName), os.Getenv(envDB)
	c, err := mongo.Connect(options.Client().ApplyURI(os.Getenv(envURI)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "leader child: connect:", err)
		return 2
	}
	// FerretDB may fail statements ("interrupted", "database is locked") while it tears down
	// the connections of a killed child: keep trying.
	var cat *catalog.Catalog
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		if cat, err = catalog.Open(context.Background(), c, catalog.WithDatabase(db+"_meta")); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "leader child: catalog:", err)
		return 2
	}
	job := counterJob{db: c.Database(db), name: name}
	cfg := cdc.ElectConfig{Leases: cat, Name: counterLease, Owner: name, TTL: counterTTL, RenewEvery: counterTTL / 4,
		ClockSkew: counterSkew, RetryEvery: 100 * time.Millisecond, Logger: log}
	for {
		err := cdc.Elect(context.Background(), cfg, job.run)
		log.Warn("counter job failed; contending again", "err", err)
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLeaderSurvivesKills runs three contender processes of the counter job and SIGKILLs the
// leader ten times, each time at a random point after it has written a few records (inside a
// write, between writes, around a renewal), starting a new contender each time. What the lease
// guarantees, and this checks from the records:
//
//   - no interleaving: along the sequence, generations never go back; every number from 1 up
//     was written exactly once (nothing lost at a takeover, no number written by two leaders);
//   - no overlap in time: every record of a generation was issued (its write sent, after the
//     work's context was checked) no later than any newer generation's work started, so a new
//     leader starts only once the old one has stopped or died;
//   - work goes on: after every kill a newer generation writes records.
//
// The processes share one clock, so the times of different processes compare exactly.
func TestLeaderSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	ctx := context.Background()
	db := fmt.Sprintf("scaleout_leader_%d", os.Getpid())
	t.Cleanup(func() {
		_ = client.Database(db).Drop(context.Background())
		_ = client.Database(db + "_meta").Drop(context.Background())
	})
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(db+"_meta"))
	require.NoError(t, err)
	counter := client.Database(db).Collection("counter")

	children := map[string]*child{}
	spawned := 0
	spawn := func() {
		spawned++
		name := fmt.Sprintf("c%d", spawned)
		children[name] = startChild(t, "leader", name, envDB+"="+db)
	}
	for range 3 {
		spawn()
	}
	var killed []int64
	for len(killed) < 10 {
		want := int64(1 + rand.IntN(8))
		var lead catalog.LeaderLease
		eventually(t, fmt.Sprintf("a leader after kill %d writing %d records", len(killed), want), func() bool {
			l, err := cat.LeaderLease(ctx, counterLease)
			if err != nil || len(killed) > 0 && l.Generation <= killed[len(killed)-1] {
				return false
			}
			n, err := counter.CountDocuments(ctx, bson.D{{Key: "gen", Value: l.Generation}})
			lead = l
			return err == nil && n >= want
		})
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		c := children[lead.Owner]
		require.NotNil(t, c, "the leader %s is one of the children", lead.Owner)
		c.kill()
		delete(children, lead.Owner)
		killed = append(killed, lead.Generation)
		t.Logf("kill %d: %s, the leader of generation %d", len(killed), lead.Owner, lead.Generation)
		spawn()
	}
	eventually(t, "work after the last kill", func() bool {
		n, err := counter.CountDocuments(ctx, bson.D{{Key: "gen", Value: bson.D{{Key: "$gt", Value: killed[len(killed)-1]}}}})
		return err == nil && n > 0
	})
	for _, c := range children {
		c.kill()
	}
	checkCounter(t, client.Database(db), killed)
}

// checkCounter checks the records of the counter job against the guarantees listed at
// TestLeaderSurvivesKills.
func checkCounter(t *testing.T, db *mongo.Database, killed []int64) {
	t.Helper()
	ctx := context.Background()
	var recs []counterRecord
	cur, err := db.Collection("counter").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &recs))
	var starts []counterStart
	cur, err = db.Collection("starts").Find(ctx, bson.D{})
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &starts))
	n, err := db.Collection("violations").CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Zero(t, n, "records a leader found written already")

	require.NotEmpty(t, recs)
	started := map[int64]time.Time{}
	for _, s := range starts {
		started[s.Generation] = s.StartedAt
	}
	lastIssued := map[int64]time.Time{} // of each generation that wrote
	var gens []int64                    // in the order they wrote
	for i, r := range recs {
		require.Equal(t, int64(i+1), r.Seq, "record %d: the sequence has a gap or a duplicate", i+1)
		if len(gens) == 0 || gens[len(gens)-1] != r.Generation {
			if len(gens) > 0 {
				require.Greater(t, r.Generation, gens[len(gens)-1], "record %d: generation %d after generation %d", r.Seq, r.Generation, gens[len(gens)-1])
			}
			gens = append(gens, r.Generation)
		}
		lastIssued[r.Generation] = r.IssuedAt
	}
	for _, g := range gens {
		_, ok := started[g]
		require.True(t, ok, "generation %d wrote records without a start", g)
		// Every newer generation that started, whether or not it got to write.
		for h, s := range started {
			assert.False(t, h > g && lastIssued[g].After(s), "generation %d issued a write at %s, after generation %d started at %s",
				g, lastIssued[g].Format(time.RFC3339Nano), h, s.Format(time.RFC3339Nano))
		}
	}
	for _, k := range killed {
		assert.Greater(t, gens[len(gens)-1], k, "work went on after generation %d was killed", k)
		assert.Contains(t, gens, k, "the killed generation %d had written records", k)
	}
	assert.GreaterOrEqual(t, len(gens), len(killed)+1)
	t.Logf("%d records by %d generations (%d kills)", len(recs), len(gens), len(killed))
}
