package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
)

// The verifier's collections. Package verify owns the algorithm (generations, claims,
// rechecks); the catalog stores its records. As with the backfill, shared records are claimed
// by insert under deterministic ids (claim.go) and then written only by their owner.
const (
	collVerifyRuns        = "verify_runs"        // one record per run
	collVerifyGenerations = "verify_generations" // one per generation of a run, naming its task maker
	collVerifyTasks       = "verify_tasks"       // a generation's tasks, immutable
	collVerifyLeases      = "verify_leases"      // one record per task and lease attempt
	collVerifyMismatches  = "verify_mismatches"  // one record per run and key that differed
	collVerifyDrift       = "verify_drift"       // drift points over time
)

// The stores a verification task reads (VerifyTask.Store).
const (
	// StoreOld: a full-pass partition of the old store, each key compared with the new store.
	StoreOld = "old"
	// StoreNew: a full-pass partition of the new store, looking for keys the old store lacks.
	StoreNew = "new"
	// StoreBoth: a full-pass key range read from both stores in key order and merged.
	StoreBoth = "both"
	// StoreRecheck: a list of keys to compare again (a recheck generation).
	StoreRecheck = "recheck"
	// StoreJoin: the whole full pass as one task (VerifyTask.Parts): every partition of both
	// stores scanned once, a digest of each document spilled to local disk in buckets of its
	// key's hash, and the buckets joined (the plan for stores with no common key order).
	StoreJoin = "join"
	// StoreSample: a continuous-mode rolling sample of the old store (not part of the full
	// pass's coverage).
	StoreSample = "sample"
)

// The generation kinds.
const (
	GenerationFull    = "full"
	GenerationRecheck = "recheck"
)

// VerifyRun is one verification of a migration: a full pass (generation 0) and the recheck
// generations after it. Several processes work on one run: the first to insert it starts it,
// the others join.
type VerifyRun struct {
	ID          string        `bson:"_id"`
	Migration   string        `bson:"migration"`
	RunID       string        `bson:"run_id"`
	Seq         int64         `bson:"seq"`
	SpecVersion string        `bson:"spec_version"`
	Mode        string        `bson:"mode"`
	Started     time.Time     `bson:"started"`
	Finished    time.Time     `bson:"finished,omitzero"`
	Total       int64         `bson:"total"`
	Settle      time.Duration `bson:"settle"`
	CreatedBy   string        `bson:"created_by"`
	LastError   string        `bson:"last_error,omitempty"`
	// MismatchBudget and MaxBacklog are the spec's verify settings when the run started: the
	// confirmed mismatches a release may carry (for the report's verdict), and the cutover
	// gate's bound on the recheck backlog (0: the gate's default).
	MismatchBudget int64 `bson:"mismatch_budget"`
	MaxBacklog     int64 `bson:"max_backlog"`
}

// unfinished matches a record whose finished time is absent or zero.
var unfinished = bson.E{Key: "$or", Value: bson.A{
	bson.D{{Key: "finished", Value: bson.D{{Key: "$exists", Value: false}}}},
	bson.D{{Key: "finished", Value: bson.D{{Key: "$lt", Value: time.Unix(86400, 0)}}}},
}}

// VerifyRunID is the id of a migration's run number seq.
func VerifyRunID(seq int64) string { return fmt.Sprintf("run-%06d", seq) }

// VerifyGeneration is one generation of a run. Its tasks are those its Maker inserted: a
// process builds a generation's tasks under its own maker id first and then inserts this
// record, which only one process can do; the losers delete their tasks.
type VerifyGeneration struct {
	ID         string    `bson:"_id"`
	Migration  string    `bson:"migration"`
	RunID      string    `bson:"run_id"`
	Generation int64     `bson:"generation"`
	Kind       string    `bson:"kind"`
	Maker      string    `bson:"maker"`
	Tasks      int       `bson:"tasks"`
	Keys       int64     `bson:"keys"`
	Started    time.Time `bson:"started"`
	Finished   time.Time `bson:"finished,omitzero"`
}

// VerifyTask is one unit of a generation that one worker claims: a partition of a store, or a
// list of keys to recheck.
type VerifyTask struct {
	ID         string `bson:"_id"`
	Migration  string `bson:"migration"`
	RunID      string `bson:"run_id"`
	Generation int64  `bson:"generation"`
	Maker      string `bson:"maker"`
	Index      int    `bson:"index"`
	Store      string `bson:"store"`
	// Min, Max, Segment and Segments are an adapters.Partition.
	Min      any   `bson:"min,omitempty"`
	Max      any   `bson:"max,omitempty"`
	Segment  int   `bson:"segment"`
	Segments int   `bson:"segments"`
	Keys     []any `bson:"keys,omitempty"`
	// Parts are the partitions a join task (StoreJoin) scans.
	Parts []VerifyPart `bson:"parts,omitempty"`
}

// VerifyPart is one partition of one store that a join task scans: Store is StoreOld or
// StoreNew, the rest an adapters.Partition.
type VerifyPart struct {
	Store    string `bson:"store"`
	Min      any    `bson:"min,omitempty"`
	Max      any    `bson:"max,omitempty"`
	Segment  int    `bson:"segment"`
	Segments int    `bson:"segments"`
}

// VerifyJoin is a join task's checkpoint: where its spill files are, how long each was when
// the checkpoint was taken (what lies beyond is cut off on resume: its batches are read
// again), each part's scan position, and how many buckets are joined. A process on another
// host, or one that finds a file shorter than recorded, starts the scans again.
type VerifyJoin struct {
	Host    string           `bson:"host"`
	Dir     string           `bson:"dir"`
	Buckets int              `bson:"buckets"`
	Sizes   []int64          `bson:"sizes"` // the old store's buckets, then the new store's
	Parts   []VerifyJoinPart `bson:"parts"`
	// Scanned is set once every part is scanned; Joined is then the number of buckets joined
	// (and counted in the lease).
	Scanned bool `bson:"scanned"`
	Joined  int  `bson:"joined"`
}

// VerifyJoinPart is one scanned part's progress in a join task.
type VerifyJoinPart struct {
	After       any    `bson:"after,omitempty"`
	HasAfter    bool   `bson:"has_after"`
	AfterString string `bson:"after_string,omitempty"`
	Done        bool   `bson:"done"`
	Docs        int64  `bson:"docs"`
}

// VerifyTaskID is the _id of a task.
func VerifyTaskID(migration, runID string, generation int64, maker string, index int) string {
	return fmt.Sprintf("%s/%s/g%04d/%s/%05d", migration, runID, generation, maker, index)
}

// VerifyLease is one attempt's claim of a task, with the task's checkpoint and counters as its
// owner last saved them; attempt a+1 is claimed by inserting its record once attempt a's has
// expired. The newest attempt is the task's state.
type VerifyLease struct {
	ID         string    `bson:"_id"`
	Migration  string    `bson:"migration"`
	RunID      string    `bson:"run_id"`
	Generation int64     `bson:"generation"`
	Task       string    `bson:"task"`
	Attempt    int64     `bson:"attempt"`
	Owner      string    `bson:"owner"`
	ClaimedAt  time.Time `bson:"claimed_at"`
	ExpiresAt  time.Time `bson:"expires_at"`
	UpdatedAt  time.Time `bson:"updated_at"`
	// After is the last key compared (the checkpoint) when HasAfter; AfterString renders it.
	After       any    `bson:"after,omitempty"`
	HasAfter    bool   `bson:"has_after"`
	AfterString string `bson:"after_string,omitempty"`
	Done        bool   `bson:"done"`
	// Counters up to the checkpoint, carried over from attempt to attempt.
	Compared int64        `bson:"compared"`
	OldDocs  int64        `bson:"old_docs"`
	NewDocs  int64        `bson:"new_docs"`
	Found    VerifyCounts `bson:"found"`
	// Error is the last error that stopped or delayed the task (a store outage).
	Error string `bson:"error,omitempty"`
	// Join is a join task's checkpoint (StoreJoin), nil for the others.
	Join *VerifyJoin `bson:"join,omitempty"`
}

// VerifyLeaseID is the _id of a task's lease of one attempt.
func VerifyLeaseID(task string, attempt int64) string { return fmt.Sprintf("%s/%d", task, attempt) }

// StartVerifyRun inserts run as the migration's run number run.Seq unless that run exists, and
// returns the stored run and whether it is this one.
func (c *Catalog) StartVerifyRun(ctx context.Context, run VerifyRun) (VerifyRun, bool, error) {
	run.RunID = VerifyRunID(run.Seq)
	run.ID = run.Migration + "/" + run.RunID
	err := c.claimByInsert(ctx, collVerifyRuns, run, "verification run "+run.ID)
	if err == nil {
		return run, true, nil
	}
	if !errors.Is(err, ErrConflict) {
		return run, false, err
	}
	var got VerifyRun
	if err := c.db.Collection(collVerifyRuns).FindOne(ctx, bson.D{{Key: "_id", Value: run.ID}}).Decode(&got); err != nil {
		return run, false, notFound(err, "verification run "+run.ID)
	}
	return got, false, nil
}

// LatestVerifyRun returns a migration's newest run, or an error wrapping ErrNotFound.
func (c *Catalog) LatestVerifyRun(ctx context.Context, migration string) (VerifyRun, error) {
	var r VerifyRun
	err := c.db.Collection(collVerifyRuns).FindOne(ctx, bson.D{{Key: "migration", Value: migration}},
		options.FindOne().SetSort(bson.D{{Key: "seq", Value: -1}})).Decode(&r)
	if err != nil {
		return r, notFound(err, "verification run of "+migration)
	}
	return r, nil
}

// VerifyRunByID returns one run, or an error wrapping ErrNotFound.
func (c *Catalog) VerifyRunByID(ctx context.Context, migration, runID string) (VerifyRun, error) {
	var r VerifyRun
	err := c.db.Collection(collVerifyRuns).FindOne(ctx, bson.D{{Key: "_id", Value: migration + "/" + runID}}).Decode(&r)
	if err != nil {
		return r, notFound(err, "verification run "+migration+"/"+runID)
	}
	return r, nil
}

// FinishVerifyRun marks a run finished at a time; a second call changes nothing.
func (c *Catalog) FinishVerifyRun(ctx context.Context, migration, runID string, at time.Time) error {
	_, err := c.db.Collection(collVerifyRuns).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: migration + "/" + runID}, unfinished},
		bson.D{{Key: "$set", Value: bson.D{{Key: "finished", Value: at.UTC()}}}})
	if err != nil {
		return fmt.Errorf("finishing verification run %s/%s: %w", migration, runID, err)
	}
	return nil
}

// NoteVerifyError records the newest error of a run (a store outage), for its state.
func (c *Catalog) NoteVerifyError(ctx context.Context, migration, runID, msg string) error {
	_, err := c.db.Collection(collVerifyRuns).UpdateOne(ctx, bson.D{{Key: "_id", Value: migration + "/" + runID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "last_error", Value: msg}}}})
	if err != nil {
		return fmt.Errorf("noting an error of verification run %s/%s: %w", migration, runID, err)
	}
	return nil
}

// CreateVerifyGeneration stores generation g.Generation of a run with tasks, unless another
// process stored it first; it returns the stored generation and whether it is this one. The
// tasks go first under g.Maker, the generation record last.
func (c *Catalog) CreateVerifyGeneration(ctx context.Context, g VerifyGeneration, tasks []VerifyTask) (VerifyGeneration, bool, error) {
	g.ID = fmt.Sprintf("%s/%s/g%04d", g.Migration, g.RunID, g.Generation)
	g.Tasks = len(tasks)
	if len(tasks) > 0 {
		docs := make([]any, len(tasks))
		for i, t := range tasks {
			t.Migration, t.RunID, t.Generation, t.Maker, t.Index = g.Migration, g.RunID, g.Generation, g.Maker, i
			t.ID = VerifyTaskID(g.Migration, g.RunID, g.Generation, g.Maker, i)
			docs[i] = t
		}
		for start := 0; start < len(docs); start += 25 { // FerretDB: keep bulk writes small
			if _, err := c.db.Collection(collVerifyTasks).InsertMany(ctx, docs[start:min(start+25, len(docs))]); err != nil && !mongo.IsDuplicateKeyError(err) {
				return g, false, fmt.Errorf("storing the tasks of verification generation %s: %w", g.ID, err)
			}
		}
	}
	err := c.claimByInsert(ctx, collVerifyGenerations, g, "verification generation "+g.ID)
	if err == nil {
		return g, true, nil
	}
	if !errors.Is(err, ErrConflict) {
		return g, false, err
	}
	_, _ = c.db.Collection(collVerifyTasks).DeleteMany(ctx, bson.D{
		{Key: "migration", Value: g.Migration}, {Key: "run_id", Value: g.RunID},
		{Key: "generation", Value: g.Generation}, {Key: "maker", Value: g.Maker},
	})
	var got VerifyGeneration
	if err := c.db.Collection(collVerifyGenerations).FindOne(ctx, bson.D{{Key: "_id", Value: g.ID}}).Decode(&got); err != nil {
		return g, false, notFound(err, "verification generation "+g.ID)
	}
	return got, false, nil
}

// FinishVerifyGeneration records when a generation's last task finished; a second call
// changes nothing.
func (c *Catalog) FinishVerifyGeneration(ctx context.Context, g VerifyGeneration, at time.Time) error {
	_, err := c.db.Collection(collVerifyGenerations).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: g.ID}, unfinished},
		bson.D{{Key: "$set", Value: bson.D{{Key: "finished", Value: at.UTC()}}}})
	if err != nil {
		return fmt.Errorf("finishing verification generation %s: %w", g.ID, err)
	}
	return nil
}

// VerifyGenerations returns a run's generations, oldest first.
func (c *Catalog) VerifyGenerations(ctx context.Context, migration, runID string) ([]VerifyGeneration, error) {
	cur, err := c.db.Collection(collVerifyGenerations).Find(ctx,
		bson.D{{Key: "migration", Value: migration}, {Key: "run_id", Value: runID}},
		options.Find().SetSort(bson.D{{Key: "generation", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading the verification generations of %s/%s: %w", migration, runID, err)
	}
	var out []VerifyGeneration
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading the verification generations of %s/%s: %w", migration, runID, err)
	}
	return out, nil
}

// VerifyTasks returns the tasks of one generation of a run (every generation when generation
// is negative), only those of each generation's maker, by generation and index.
func (c *Catalog) VerifyTasks(ctx context.Context, migration, runID string, generation int64) ([]VerifyTask, error) {
	gens, err := c.VerifyGenerations(ctx, migration, runID)
	if err != nil {
		return nil, err
	}
	makers := map[int64]string{}
	for _, g := range gens {
		makers[g.Generation] = g.Maker
	}
	filter := bson.D{{Key: "migration", Value: migration}, {Key: "run_id", Value: runID}}
	if generation >= 0 {
		filter = append(filter, bson.E{Key: "generation", Value: generation})
	}
	cur, err := c.db.Collection(collVerifyTasks).Find(ctx, filter,
		options.Find().SetSort(bson.D{{Key: "generation", Value: 1}, {Key: "index", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("reading the verification tasks of %s/%s: %w", migration, runID, err)
	}
	var all []VerifyTask
	if err := cur.All(ctx, &all); err != nil {
		return nil, fmt.Errorf("reading the verification tasks of %s/%s: %w", migration, runID, err)
	}
	out := all[:0]
	for _, t := range all {
		if m, ok := makers[t.Generation]; ok && m == t.Maker {
			out = append(out, t)
		}
	}
	return out, nil
}

// VerifyLeases returns the newest attempt of every claimed task of a run (of one generation,
// or every one when generation is negative), by task id.
func (c *Catalog) VerifyLeases(ctx context.Context, migration, runID string, generation int64) (map[string]VerifyLease, error) {
	filter := bson.D{{Key: "migration", Value: migration}, {Key: "run_id", Value: runID}}
	if generation >= 0 {
		filter = append(filter, bson.E{Key: "generation", Value: generation})
	}
	return newestClaims(ctx, c, collVerifyLeases, filter,
		fmt.Sprintf("the verification leases of %s/%s", migration, runID),
		func(l VerifyLease) (string, int64) { return l.Task, l.Attempt })
}

// ClaimVerifyLease inserts a task's lease attempt; ErrConflict means another process claimed
// that attempt first.
func (c *Catalog) ClaimVerifyLease(ctx context.Context, l VerifyLease) error {
	l.ID = VerifyLeaseID(l.Task, l.Attempt)
	return c.claimByInsert(ctx, collVerifyLeases, l, fmt.Sprintf("verification task %s, attempt %d", l.Task, l.Attempt))
}

// VerifyLeaseExists reports whether a task's lease of an attempt has been claimed.
func (c *Catalog) VerifyLeaseExists(ctx context.Context, task string, attempt int64) (bool, error) {
	id := VerifyLeaseID(task, attempt)
	return c.claimed(ctx, collVerifyLeases, id, "verification lease "+id)
}

// SaveVerifyLease writes a lease's mutable fields (expiry, checkpoint, done, counters, error).
// Only its owner may call it, one call at a time.
func (c *Catalog) SaveVerifyLease(ctx context.Context, l VerifyLease) error {
	id := VerifyLeaseID(l.Task, l.Attempt)
	set := bson.D{
		{Key: "expires_at", Value: l.ExpiresAt}, {Key: "updated_at", Value: l.UpdatedAt},
		{Key: "has_after", Value: l.HasAfter}, {Key: "after_string", Value: l.AfterString}, {Key: "done", Value: l.Done},
		{Key: "compared", Value: l.Compared}, {Key: "old_docs", Value: l.OldDocs}, {Key: "new_docs", Value: l.NewDocs},
		{Key: "found", Value: l.Found}, {Key: "error", Value: l.Error},
	}
	if l.HasAfter {
		set = append(set, bson.E{Key: "after", Value: l.After})
	}
	set = append(set, bson.E{Key: "join", Value: l.Join}) // a join's checkpoint; nil (null): none, or start again
	return c.saveOwned(ctx, collVerifyLeases, id, l.Owner, set, "verification lease "+id)
}

// VerifyMismatchID is the _id of a run's mismatch record of a key.
func VerifyMismatchID(migration, runID, keyString string) string {
	return migration + "/" + runID + "/" + keyString
}

// VerifyMismatchOf returns a run's record of a key; false when there is none.
func (c *Catalog) VerifyMismatchOf(ctx context.Context, migration, runID, keyString string) (VerifyMismatch, bool, error) {
	var m VerifyMismatch
	err := c.db.Collection(collVerifyMismatches).FindOne(ctx, bson.D{{Key: "_id", Value: VerifyMismatchID(migration, runID, keyString)}}).Decode(&m)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("reading the verification mismatch of %s in %s/%s: %w", keyString, migration, runID, err)
	}
	return m, true, nil
}

// SaveVerifyMismatch writes a key's mismatch record, replacing the one before. The verifier
// compares one key in one task at a time, so a record has one writer at a time.
func (c *Catalog) SaveVerifyMismatch(ctx context.Context, m VerifyMismatch) error {
	m.ID = VerifyMismatchID(m.Migration, m.RunID, m.KeyString)
	if m.State == MismatchConfirmed {
		m.ConfirmedOnce = true
	}
	coll := c.db.Collection(collVerifyMismatches)
	_, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: m.ID}}, m, options.Replace().SetUpsert(true))
	if mongo.IsDuplicateKeyError(err) { // a racing first upsert
		_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: m.ID}}, m, options.Replace().SetUpsert(true))
	}
	if err != nil {
		return fmt.Errorf("saving the verification mismatch of %s: %w", m.KeyString, err)
	}
	return nil
}

// OpenVerifyMismatches returns a run's mismatches in the given states (all of them, for the
// next generation's keys), by key.
func (c *Catalog) OpenVerifyMismatches(ctx context.Context, migration, runID string, states ...string) ([]VerifyMismatch, error) {
	cur, err := c.db.Collection(collVerifyMismatches).Find(ctx, bson.D{
		{Key: "migration", Value: migration}, {Key: "run_id", Value: runID},
		{Key: "state", Value: bson.D{{Key: "$in", Value: states}}},
	}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetProjection(bson.D{{Key: "fields", Value: 0}}))
	if err != nil {
		return nil, fmt.Errorf("reading the open verification mismatches of %s/%s: %w", migration, runID, err)
	}
	var out []VerifyMismatch
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading the open verification mismatches of %s/%s: %w", migration, runID, err)
	}
	return out, nil
}

// AddVerifyDrift records a drift point of a run.
func (c *Catalog) AddVerifyDrift(ctx context.Context, migration, runID string, p VerifyDriftPoint) error {
	doc := bson.D{
		{Key: "migration", Value: migration}, {Key: "run_id", Value: runID}, {Key: "owner", Value: c.owner},
		{Key: "at", Value: p.At.UTC()}, {Key: "generation", Value: p.Generation}, {Key: "confirmed", Value: p.Confirmed},
		{Key: "pending", Value: p.Pending}, {Key: "backlog", Value: p.Backlog}, {Key: "compared", Value: p.Compared},
	}
	if _, err := c.db.Collection(collVerifyDrift).InsertOne(ctx, doc); err != nil {
		return fmt.Errorf("recording verification drift of %s/%s: %w", migration, runID, err)
	}
	return nil
}

// VerifyBacklog counts the distinct keys of a run waiting for a recheck: those of recheck
// tasks not done yet, and the pending mismatches.
func (c *Catalog) VerifyBacklog(ctx context.Context, run VerifyRun) (int64, error) {
	tasks, err := c.VerifyTasks(ctx, run.Migration, run.RunID, -1)
	if err != nil {
		return 0, err
	}
	leases, err := c.VerifyLeases(ctx, run.Migration, run.RunID, -1)
	if err != nil {
		return 0, err
	}
	keys := map[string]bool{}
	for _, t := range tasks {
		if t.Store != StoreRecheck || leases[t.ID].Done {
			continue
		}
		for _, k := range t.Keys {
			keys[adapters.KeyString(k)] = true
		}
	}
	pending, err := c.OpenVerifyMismatches(ctx, run.Migration, run.RunID, MismatchPending)
	if err != nil {
		return 0, err
	}
	for _, m := range pending {
		keys[m.KeyString] = true
	}
	return int64(len(keys)), nil
}

// ChangedKeysSince returns keys of a migration that the catalog saw change at or after since:
// those whose converge failed (dead letters last seen since) and those a shadow read found
// different (mismatches of another source than the verifier, found since). At most limit.
func (c *Catalog) ChangedKeysSince(ctx context.Context, migration string, since time.Time, limit int) ([]any, error) {
	var out []any
	dl, err := c.db.Collection(collDeadLetters).Find(ctx, bson.D{
		{Key: "migration", Value: migration}, {Key: "last_seen", Value: bson.D{{Key: "$gte", Value: since}}},
	}, options.Find().SetProjection(bson.D{{Key: "key", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("reading the dead letters of %s since %s: %w", migration, since, err)
	}
	var keys []struct {
		Key any `bson:"key"`
	}
	if err := dl.All(ctx, &keys); err != nil {
		return nil, fmt.Errorf("reading the dead letters of %s: %w", migration, err)
	}
	mm, err := c.db.Collection(collMismatches).Find(ctx, bson.D{
		{Key: "migration", Value: migration}, {Key: "source", Value: bson.D{{Key: "$ne", Value: "verify"}}},
		{Key: "found_at", Value: bson.D{{Key: "$gte", Value: since}}},
	}, options.Find().SetProjection(bson.D{{Key: "key", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("reading the mismatches of %s since %s: %w", migration, since, err)
	}
	var more []struct {
		Key any `bson:"key"`
	}
	if err := mm.All(ctx, &more); err != nil {
		return nil, fmt.Errorf("reading the mismatches of %s: %w", migration, err)
	}
	for _, k := range append(keys, more...) {
		if len(out) < limit {
			out = append(out, k.Key)
		}
	}
	return out, nil
}
