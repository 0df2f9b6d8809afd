package catalog

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The read side of verification: what a run has covered and found, as the cutover gate, the
// admin API and the release report read it. Package verify writes these records
// (verify_tasks.go); nothing here writes.

// MismatchKind is what a comparison of one key found.
type MismatchKind string

// The kinds of mismatch.
const (
	// KindMissing: the old store has the key, the new store does not.
	KindMissing MismatchKind = "missing"
	// KindExtra: the new store has the key, the old store does not.
	KindExtra MismatchKind = "extra"
	// KindDiffering: both have it, and the new document is not transform(old).
	KindDiffering MismatchKind = "differing"
	// KindUntransformable: the old document cannot be transformed, or the new store cannot
	// hold its transform.
	KindUntransformable MismatchKind = "untransformable"
	// KindInvariantBroken: the new document breaks one of the spec's invariants.
	KindInvariantBroken MismatchKind = "invariant_broken"
	// KindIndexMissing: the new store lacks an index the spec requires (the "key" is the
	// index's description).
	KindIndexMissing MismatchKind = "index_missing"
)

// MismatchKinds lists every kind, in the order reports show them.
var MismatchKinds = []MismatchKind{KindMissing, KindExtra, KindDiffering, KindUntransformable, KindInvariantBroken, KindIndexMissing}

// The states of a verification mismatch.
const (
	// MismatchPending: seen, but younger than the settle time, or not rechecked yet; not a
	// failure (a write racing the scan looks like this until it converges).
	MismatchPending = "pending"
	// MismatchConfirmed: still there on a recheck at least the settle time after it was first
	// seen.
	MismatchConfirmed = "confirmed"
	// MismatchResolved: gone on a recheck (a write converged it, or a repair did).
	MismatchResolved = "resolved"
)

// VerifyCounts counts mismatches by kind.
type VerifyCounts struct {
	Missing         int64 `bson:"missing" json:"missing"`
	Extra           int64 `bson:"extra" json:"extra"`
	Differing       int64 `bson:"differing" json:"differing"`
	Untransformable int64 `bson:"untransformable" json:"untransformable"`
	InvariantBroken int64 `bson:"invariant_broken" json:"invariant_broken"`
	IndexMissing    int64 `bson:"index_missing" json:"index_missing"`
}

// Add counts one mismatch of kind k.
func (c *VerifyCounts) Add(k MismatchKind, n int64) {
	switch k {
	case KindMissing:
		c.Missing += n
	case KindExtra:
		c.Extra += n
	case KindDiffering:
		c.Differing += n
	case KindUntransformable:
		c.Untransformable += n
	case KindInvariantBroken:
		c.InvariantBroken += n
	case KindIndexMissing:
		c.IndexMissing += n
	}
}

// Total is the sum over every kind.
func (c VerifyCounts) Total() int64 {
	return c.Missing + c.Extra + c.Differing + c.Untransformable + c.InvariantBroken + c.IndexMissing
}

// VerifyState is the state of a migration's newest verification run.
type VerifyState struct {
	Migration   string `json:"migration"`
	RunID       string `json:"run_id"`
	SpecVersion string `json:"spec_version"`
	// Mode is "once" (tandem verify) or "continuous" (the runtime's verify path).
	Mode     string    `json:"mode"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"` // zero while the run goes on
	// Generation is the newest generation: 0 is the full pass, each later one rechecks keys.
	Generation int64 `json:"generation"`
	// FullPassDone says generation 0 covered every partition of both stores;
	// FullPassFinished is when its last task finished.
	FullPassDone     bool      `json:"full_pass_done"`
	FullPassFinished time.Time `json:"full_pass_finished,omitzero"`
	// Compared is the keys the full pass compared; Total the documents of the old store when
	// the run started (an estimate), so Compared/Total is the coverage.
	Compared int64 `json:"compared"`
	Total    int64 `json:"total"`
	// Sampled is the keys the continuous mode's rolling sample compared, over every run (the
	// progress counter "sampled" of path "verify").
	Sampled int64 `json:"sampled"`
	// Confirmed counts the confirmed mismatches not resolved since, by kind; FoundTotal counts
	// every mismatch the run confirmed, resolved or not.
	Confirmed  VerifyCounts `json:"confirmed"`
	FoundTotal VerifyCounts `json:"found_total"`
	// Pending is the mismatches seen but not yet confirmed (younger than the settle time, or
	// not rechecked yet); Backlog the keys waiting for a recheck (pending ones included).
	Pending int64 `json:"pending"`
	Backlog int64 `json:"backlog"`
	// Settle is the run's settle time; MismatchBudget the confirmed mismatches a release may
	// carry; MaxBacklog the gate's bound on Backlog (0: the gate's default). All three are
	// the spec's, as of the run's start.
	Settle         time.Duration `json:"settle"`
	MismatchBudget int64         `json:"mismatch_budget"`
	MaxBacklog     int64         `json:"max_backlog"`
	// Generations describes each generation, oldest first.
	Generations []VerifyGenerationState `json:"generations"`
	// Partitions counts what each full-pass partition compared.
	Partitions []VerifyPartitionCount `json:"partitions"`
	// Uncovered lists the full-pass partitions not (or not wholly) compared: a run interrupted
	// by an outage, or still going, says here what it has not seen.
	Uncovered []VerifyUncovered `json:"uncovered,omitempty"`
	// LastError is the newest error a worker saved (a store outage), empty if none.
	LastError string `json:"last_error,omitempty"`
}

// Clean reports whether the run's full pass covered everything and nothing confirmed or
// pending is left.
func (s VerifyState) Clean() bool {
	return s.FullPassDone && s.Confirmed.Total() == 0 && s.Pending == 0
}

// VerifyGenerationState is one generation of a run.
type VerifyGenerationState struct {
	Generation int64     `json:"generation"`
	Kind       string    `json:"kind"` // "full" or "recheck"
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished,omitzero"`
	Tasks      int       `json:"tasks"`
	TasksDone  int       `json:"tasks_done"`
	// Keys is the keys the generation was given to recheck (0 for the full pass); Compared
	// those it compared so far.
	Keys     int64 `json:"keys"`
	Compared int64 `json:"compared"`
	// Found counts the mismatches it saw (pending or confirmed at the time).
	Found VerifyCounts `json:"found"`
}

// VerifyPartitionCount is what one full-pass partition of one store compared.
type VerifyPartitionCount struct {
	// Store is "old", "new" (keys only the new store has), "both" (merged scan), or, for a
	// join, "old"/"new" (a part's documents read) and "join" (the keys compared).
	Store     string `json:"store"`
	Partition int    `json:"partition"`
	Done      bool   `json:"done"`
	// Compared is the keys compared; OldDocs and NewDocs the documents read from each store.
	Compared int64        `json:"compared"`
	OldDocs  int64        `json:"old_docs"`
	NewDocs  int64        `json:"new_docs"`
	Found    VerifyCounts `json:"found"`
}

// joinState adds a join task's rows to s: one per scanned part (the documents it read; the
// keys are compared by bucket, after every part is scanned, and counted on the join's own
// row), then the join's; and what it has not covered. It reports whether the join is done.
func joinState(s *VerifyState, t VerifyTask, l VerifyLease, claimed bool) bool {
	index := map[string]int{}
	for i, p := range t.Parts {
		row := VerifyPartitionCount{Store: p.Store, Partition: index[p.Store]}
		index[p.Store]++
		var jp VerifyJoinPart
		if l.Join != nil && i < len(l.Join.Parts) {
			jp = l.Join.Parts[i]
		}
		row.Done = jp.Done
		if p.Store == StoreNew {
			row.NewDocs = jp.Docs
		} else {
			row.OldDocs = jp.Docs
		}
		s.Partitions = append(s.Partitions, row)
		if !l.Done && !jp.Done {
			s.Uncovered = append(s.Uncovered, uncovered(p.Store, row.Partition, jp.AfterString, claimed, l.Error))
		}
	}
	s.Partitions = append(s.Partitions, VerifyPartitionCount{Store: StoreJoin, Done: l.Done, Compared: l.Compared,
		OldDocs: l.OldDocs, NewDocs: l.NewDocs, Found: l.Found})
	if l.Done {
		return true
	}
	if l.Join != nil && l.Join.Scanned {
		reason := fmt.Sprintf("every partition scanned; %d of %d buckets joined", l.Join.Joined, l.Join.Buckets)
		if l.Error != "" {
			reason += ": " + l.Error
		}
		s.Uncovered = append(s.Uncovered, VerifyUncovered{Store: StoreJoin, Reason: reason})
	}
	return false
}

// uncovered is a partition not wholly compared: not started (not claimed), or in progress
// after a key, or stopped by errMsg.
func uncovered(store string, partition int, after string, claimed bool, errMsg string) VerifyUncovered {
	u := VerifyUncovered{Store: store, Partition: partition, Reason: "not started"}
	if claimed {
		u.After, u.Reason = after, "in progress"
		if errMsg != "" {
			u.Reason = errMsg
		}
	}
	return u
}

// VerifyUncovered is a full-pass partition that was not wholly compared.
type VerifyUncovered struct {
	Store     string `json:"store"`
	Partition int    `json:"partition"`
	// After is the last key compared (KeyString), empty if none was; the rest of the
	// partition is uncovered.
	After string `json:"after,omitempty"`
	// Reason is the error that stopped the partition's last worker, or "not started" /
	// "in progress".
	Reason string `json:"reason"`
}

// VerifyDriftPoint is a sample of a run's state over time: the mismatches outstanding then.
type VerifyDriftPoint struct {
	At         time.Time `bson:"at" json:"at"`
	Generation int64     `bson:"generation" json:"generation"`
	Confirmed  int64     `bson:"confirmed" json:"confirmed"`
	Pending    int64     `bson:"pending" json:"pending"`
	Backlog    int64     `bson:"backlog" json:"backlog"`
	Compared   int64     `bson:"compared" json:"compared"`
}

// VerifyFieldDiff is one differing field path of a mismatch. WantHash and GotHash are the
// first 16 hex digits of the SHA-256 of each value's canonical Extended JSON, so that two
// reports can tell a value changed without showing it; Want and Got are the values
// themselves, kept only when a reader asks for them (VerifyMismatchQuery.IncludeValues).
type VerifyFieldDiff struct {
	Path     string `bson:"path" json:"path"`
	WantType string `bson:"want_type,omitempty" json:"want_type,omitempty"` // "" when the field is absent
	GotType  string `bson:"got_type,omitempty" json:"got_type,omitempty"`
	WantHash string `bson:"want_hash,omitempty" json:"want_hash,omitempty"`
	GotHash  string `bson:"got_hash,omitempty" json:"got_hash,omitempty"`
	Want     any    `bson:"want,omitempty" json:"want,omitempty"`
	Got      any    `bson:"got,omitempty" json:"got,omitempty"`
}

// VerifyMismatch is one key's mismatch in a run.
type VerifyMismatch struct {
	ID        string       `bson:"_id" json:"-"`
	Migration string       `bson:"migration" json:"migration"`
	RunID     string       `bson:"run_id" json:"run_id"`
	Key       any          `bson:"key" json:"-"`
	KeyString string       `bson:"key_string" json:"key"`
	Kind      MismatchKind `bson:"kind" json:"kind"`
	State     string       `bson:"state" json:"state"` // MismatchPending, MismatchConfirmed or MismatchResolved
	FirstSeen time.Time    `bson:"first_seen" json:"first_seen"`
	LastSeen  time.Time    `bson:"last_seen" json:"last_seen"`
	// Generation is the generation that last compared the key.
	Generation int64 `bson:"generation" json:"generation"`
	// Detail says what is wrong in words without values ("missing in the new store",
	// "invariant email-domain is false", "transform failed at forward[2] convert age").
	Detail string            `bson:"detail" json:"detail"`
	Fields []VerifyFieldDiff `bson:"fields,omitempty" json:"fields,omitempty"`
	// ConfirmedOnce says the mismatch was confirmed at some point, even if resolved since
	// (a repair, a late converge): it counts in VerifyState.FoundTotal.
	ConfirmedOnce bool `bson:"confirmed_once" json:"confirmed_once"`
	// Repaired is when a repair converged the key (the recheck after it decides the state).
	Repaired time.Time `bson:"repaired,omitzero" json:"repaired,omitzero"`
}

// VerifyMismatchQuery selects mismatches of a run.
type VerifyMismatchQuery struct {
	// RunID is the run; empty means the newest.
	RunID string
	// States filters by state; empty means confirmed and pending.
	States []string
	// Limit is the most returned, newest LastSeen first; 0 means 100.
	Limit int
	// IncludeValues keeps the field values (user data); without it Want and Got are cleared.
	IncludeValues bool
}

// VerifyState returns the state of a migration's newest verification run, or an error
// wrapping ErrNotFound when it has none.
func (c *Catalog) VerifyState(ctx context.Context, migration string) (VerifyState, error) {
	run, err := c.LatestVerifyRun(ctx, migration)
	if err != nil {
		return VerifyState{}, err
	}
	return c.VerifyRunState(ctx, run)
}

// VerifyRunState puts together the state of one run from its generations, task leases and
// mismatches.
func (c *Catalog) VerifyRunState(ctx context.Context, run VerifyRun) (VerifyState, error) {
	s := VerifyState{
		Migration: run.Migration, RunID: run.RunID, SpecVersion: run.SpecVersion, Mode: run.Mode,
		Started: run.Started, Finished: run.Finished, Total: run.Total, Settle: run.Settle,
		MismatchBudget: run.MismatchBudget, MaxBacklog: run.MaxBacklog, LastError: run.LastError,
	}
	gens, err := c.VerifyGenerations(ctx, run.Migration, run.RunID)
	if err != nil {
		return s, err
	}
	tasks, err := c.VerifyTasks(ctx, run.Migration, run.RunID, -1)
	if err != nil {
		return s, err
	}
	leases, err := c.VerifyLeases(ctx, run.Migration, run.RunID, -1)
	if err != nil {
		return s, err
	}
	byGen := map[int64]*VerifyGenerationState{}
	for _, g := range gens {
		gs := VerifyGenerationState{Generation: g.Generation, Kind: g.Kind, Started: g.Started, Finished: g.Finished, Keys: g.Keys}
		s.Generations = append(s.Generations, gs)
		s.Generation = max(s.Generation, g.Generation)
	}
	for i := range s.Generations {
		byGen[s.Generations[i].Generation] = &s.Generations[i]
	}
	fullDone := len(gens) > 0
	for _, t := range tasks {
		g := byGen[t.Generation]
		l, claimed := leases[t.ID]
		if g != nil {
			g.Tasks++
			if l.Done {
				g.TasksDone++
			}
			g.Compared += l.Compared
			g.Found.AddAll(l.Found)
		}
		if t.Generation == 0 && t.Store == StoreJoin {
			s.Compared += l.Compared
			if !joinState(&s, t, l, claimed) {
				fullDone = false
			}
			continue
		}
		if t.Generation == 0 {
			s.Compared += l.Compared
			s.Partitions = append(s.Partitions, VerifyPartitionCount{
				Store: t.Store, Partition: t.Index, Done: l.Done, Compared: l.Compared,
				OldDocs: l.OldDocs, NewDocs: l.NewDocs, Found: l.Found,
			})
			if !l.Done {
				fullDone = false
				s.Uncovered = append(s.Uncovered, uncovered(t.Store, t.Index, l.AfterString, claimed, l.Error))
			}
		}
	}
	if g := byGen[0]; g != nil && fullDone {
		s.FullPassDone = true
		s.FullPassFinished = g.Finished
	}
	counts, err := c.verifyMismatchCounts(ctx, run.Migration, run.RunID)
	if err != nil {
		return s, err
	}
	s.Confirmed, s.FoundTotal, s.Pending = counts.confirmed, counts.found, counts.pending
	if p, err := c.Progress(ctx, run.Migration, "verify"); err == nil {
		s.Sampled = p["sampled"]
	}
	s.Backlog, err = c.VerifyBacklog(ctx, run)
	return s, err
}

// AddAll adds every count of o.
func (c *VerifyCounts) AddAll(o VerifyCounts) {
	for _, k := range MismatchKinds {
		c.Add(k, o.Of(k))
	}
}

// Of returns the count of kind k.
func (c VerifyCounts) Of(k MismatchKind) int64 {
	switch k {
	case KindMissing:
		return c.Missing
	case KindExtra:
		return c.Extra
	case KindDiffering:
		return c.Differing
	case KindUntransformable:
		return c.Untransformable
	case KindInvariantBroken:
		return c.InvariantBroken
	case KindIndexMissing:
		return c.IndexMissing
	}
	return 0
}

type mismatchCounts struct {
	confirmed, found VerifyCounts
	pending          int64
}

// verifyMismatchCounts counts a run's mismatches by state and kind (read with a projection:
// a run holds one record per key that ever differed).
func (c *Catalog) verifyMismatchCounts(ctx context.Context, migration, runID string) (mismatchCounts, error) {
	var out mismatchCounts
	cur, err := c.db.Collection(collVerifyMismatches).Find(ctx,
		bson.D{{Key: "migration", Value: migration}, {Key: "run_id", Value: runID}},
		options.Find().SetProjection(bson.D{{Key: "kind", Value: 1}, {Key: "state", Value: 1}, {Key: "confirmed_once", Value: 1}}))
	if err != nil {
		return out, fmt.Errorf("reading the verification mismatches of %s: %w", migration, err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var m struct {
			Kind          MismatchKind `bson:"kind"`
			State         string       `bson:"state"`
			ConfirmedOnce bool         `bson:"confirmed_once"`
		}
		if err := cur.Decode(&m); err != nil {
			return out, fmt.Errorf("decoding a verification mismatch of %s: %w", migration, err)
		}
		switch m.State {
		case MismatchConfirmed:
			out.confirmed.Add(m.Kind, 1)
		case MismatchPending:
			out.pending++
		}
		if m.ConfirmedOnce || m.State == MismatchConfirmed {
			out.found.Add(m.Kind, 1)
		}
	}
	if err := cur.Err(); err != nil {
		return out, fmt.Errorf("reading the verification mismatches of %s: %w", migration, err)
	}
	return out, nil
}

// VerifyMismatches returns mismatches of a migration's run (see VerifyMismatchQuery).
func (c *Catalog) VerifyMismatches(ctx context.Context, migration string, q VerifyMismatchQuery) ([]VerifyMismatch, error) {
	if q.RunID == "" {
		run, err := c.LatestVerifyRun(ctx, migration)
		if err != nil {
			return nil, err
		}
		q.RunID = run.RunID
	}
	states := q.States
	if len(states) == 0 {
		states = []string{MismatchConfirmed, MismatchPending}
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	cur, err := c.db.Collection(collVerifyMismatches).Find(ctx, bson.D{
		{Key: "migration", Value: migration}, {Key: "run_id", Value: q.RunID},
		{Key: "state", Value: bson.D{{Key: "$in", Value: states}}},
	}, options.Find().SetSort(bson.D{{Key: "last_seen", Value: -1}, {Key: "_id", Value: 1}}).SetLimit(int64(q.Limit)))
	if err != nil {
		return nil, fmt.Errorf("reading the verification mismatches of %s: %w", migration, err)
	}
	var out []VerifyMismatch
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading the verification mismatches of %s: %w", migration, err)
	}
	if !q.IncludeValues {
		for i := range out {
			for j := range out[i].Fields {
				out[i].Fields[j].Want, out[i].Fields[j].Got = nil, nil
			}
		}
	}
	return out, nil
}

// VerifyDrift returns a run's drift points since a time (zero: all), oldest first; an empty
// runID means the newest run.
func (c *Catalog) VerifyDrift(ctx context.Context, migration, runID string, since time.Time) ([]VerifyDriftPoint, error) {
	if runID == "" {
		run, err := c.LatestVerifyRun(ctx, migration)
		if err != nil {
			return nil, err
		}
		runID = run.RunID
	}
	cur, err := c.db.Collection(collVerifyDrift).Find(ctx, bson.D{
		{Key: "migration", Value: migration}, {Key: "run_id", Value: runID},
		{Key: "at", Value: bson.D{{Key: "$gte", Value: since}}},
	})
	if err != nil {
		return nil, fmt.Errorf("reading the verification drift of %s: %w", migration, err)
	}
	var out []VerifyDriftPoint
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("reading the verification drift of %s: %w", migration, err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out, nil
}
