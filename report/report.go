// Package report builds the release report of a migration: the verdict of its verification
// against the spec's mismatch budget, with the evidence a release manager signs off on (the
// spec, coverage, counts by kind, drift over time, the top mismatches field by field, the
// phase and flag history, the cutover gates, lags and dead letters, and the sign-offs).
//
// A report is generated from a Source, stored in the catalog under an id (kind
// catalog.ReportKindRelease) with everything it showed, and rendered as JSON (SchemaVersion,
// schema in schema/report-v1.json), Markdown or one self-contained HTML page. Rendering a
// stored report again gives the same document; only its sign-off block grows, because
// sign-offs are read from the audit trail each time.
//
// Document values are user data: a report carries, for every differing field, its path, the
// BSON types on both sides and a hash of each value, and the values themselves only when
// asked (Options.IncludeValues). The stored report keeps the values (the catalog's mismatch
// records hold them already); the admin API gives them only to a caller with the token.
package report

import (
	"context"
	"errors"
	"time"
)

// SchemaVersion is the version of the JSON layout (the "schema_version" field). It grows by
// one when a field is removed, renamed or changes meaning; new optional fields keep it.
const SchemaVersion = 1

// SchemaID names the JSON schema of this version (the "$id" of schema/report-v1.json).
const SchemaID = "https://tandem.dev/schemas/report-v1.json"

// Verdicts.
const (
	Pass = "PASS"
	Fail = "FAIL"
)

// Mismatch kinds: the keys of Counts and the Kind of a Mismatch.
const (
	KindMissing         = "missing"          // the new store lacks the key
	KindExtra           = "extra"            // only the new store has the key
	KindDiffering       = "differing"        // both have it, fields differ
	KindUntransformable = "untransformable"  // the forward transform (or the new store's mapping) rejects the old document
	KindInvariantBroken = "invariant_broken" // the new document breaks one of the spec's invariants
	KindIndexMissing    = "index_missing"    // an index the spec names is missing from the new store
)

// Kinds lists every mismatch kind, in the order reports show them.
var Kinds = []string{KindMissing, KindExtra, KindDiffering, KindUntransformable, KindInvariantBroken, KindIndexMissing}

// Sentinel errors.
var (
	// ErrUnknownMigration means the Source knows no migration by that name.
	ErrUnknownMigration = errors.New("unknown migration")
	// ErrUnknownReport means no stored release report of the migration has that id.
	ErrUnknownReport = errors.New("unknown report id")
	// ErrSpecVersion means the server generating a report runs another spec version of the
	// migration than the catalog's current one, so its mismatch budget may not apply.
	ErrSpecVersion = errors.New("spec version mismatch")
)

// Source is what a report is generated from. Each method reads the migration's state as it is
// now; a method that cannot say something leaves it zero and says so in the value it returns
// (Verification.NotCovered, a nil count), it never guesses.
type Source interface {
	// Migration returns the migration's spec and flags, or an error wrapping
	// ErrUnknownMigration.
	Migration(ctx context.Context, name string) (MigrationState, error)
	// Verification returns the newest verification's outcome and the drift before it.
	Verification(ctx context.Context, name string) (Verification, error)
	// History returns the migration's phase, flag, spec and backfill changes, oldest first.
	History(ctx context.Context, name string) ([]Event, error)
	// Gates evaluates the cutover gates now, changing nothing.
	Gates(ctx context.Context, name string) ([]Gate, error)
	// Lags returns the change-lag records of the migration's change followers.
	Lags(ctx context.Context, name string) ([]Lag, error)
	// DeadLetters counts the migration's dead letters by direction.
	DeadLetters(ctx context.Context, name string) (DeadLetters, error)
}

// MigrationState is a migration as the report names it.
type MigrationState struct {
	Name           string
	SpecName       string
	SpecVersion    string
	MismatchBudget int64 // the spec's verify.mismatch_budget (0 when it has none)
	Phase          string
	Flags          map[string]string // every flag but the phase, as stored
}

// Verification is the outcome of the verification a report judges. It is its own type so that
// any verifier can fill it: today the catalog's saved summaries (CatalogSource), later the
// verification state of resumable, generational runs. A count that the verification did not
// check is nil (absent), never 0; whatever it did not cover is listed in NotCovered.
type Verification struct {
	// Found is false when no verification has been recorded: everything else is then zero.
	Found bool `json:"found"`
	// Origin names what filled this value, e.g. "catalog verification summary".
	Origin   string     `json:"origin"`
	Started  *time.Time `json:"started"`
	Finished *time.Time `json:"finished"`
	// Complete means the verification went through every key of both stores (it was not
	// aborted). Only then can its counts vouch for the whole store.
	Complete bool `json:"complete"`
	// Position is the position in the change history the verification is as of (a resume
	// token, a journal offset), empty when the verifier records none.
	Position string `json:"position"`
	// Counts holds confirmed mismatches by kind.
	Counts Counts `json:"counts"`
	// Pending counts differences younger than the settle time: not failures yet. Nil when the
	// verifier does not track them.
	Pending *int64 `json:"pending"`
	// Compared is how many documents (keys) were compared.
	Compared int64 `json:"compared"`
	// Total is how many documents the store held, nil when the verifier did not record it.
	Total *int64 `json:"total"`
	// Drift is confirmed mismatches over time, oldest first (one point per verification run
	// today; per generation or sample interval from a continuous verifier).
	Drift []DriftPoint `json:"drift"`
	// Top lists the first mismatches, at most MaxTopMismatches.
	Top []Mismatch `json:"top_mismatches"`
	// NotCovered says what this verification did not check, and why.
	NotCovered []Gap `json:"not_covered"`
}

// Counts holds confirmed mismatches by kind; nil means the kind was not checked.
type Counts struct {
	Missing         *int64 `json:"missing"`
	Extra           *int64 `json:"extra"`
	Differing       *int64 `json:"differing"`
	Untransformable *int64 `json:"untransformable"`
	InvariantBroken *int64 `json:"invariant_broken"`
	IndexMissing    *int64 `json:"index_missing"`
}

// ByKind returns the count of one kind (see Kinds) and whether it was checked.
func (c Counts) ByKind(kind string) (int64, bool) {
	var p *int64
	switch kind {
	case KindMissing:
		p = c.Missing
	case KindExtra:
		p = c.Extra
	case KindDiffering:
		p = c.Differing
	case KindUntransformable:
		p = c.Untransformable
	case KindInvariantBroken:
		p = c.InvariantBroken
	case KindIndexMissing:
		p = c.IndexMissing
	}
	if p == nil {
		return 0, false
	}
	return *p, true
}

// Confirmed is the sum of every checked count.
func (c Counts) Confirmed() int64 {
	var n int64
	for _, k := range Kinds {
		v, _ := c.ByKind(k)
		n += v
	}
	return n
}

// DriftPoint is how many confirmed mismatches were outstanding at a time.
type DriftPoint struct {
	At        time.Time `json:"at"`
	Confirmed int64     `json:"confirmed"`
}

// MaxTopMismatches bounds Verification.Top.
const MaxTopMismatches = 20

// Mismatch is one confirmed mismatch, field by field.
type Mismatch struct {
	Key        string      `json:"key"` // the key, rendered canonically (adapters.KeyString)
	Kind       string      `json:"kind"`
	Source     string      `json:"source"` // who found it: "verify", "shadow-read"
	FirstSeen  time.Time   `json:"first_seen"`
	LastSeen   *time.Time  `json:"last_seen"` // nil when the verifier records only the first sighting
	RepairedAt *time.Time  `json:"repaired_at"`
	Fields     []FieldDiff `json:"fields"`
}

// Field changes.
const (
	ChangeDiffers    = "differs"    // both sides have the path, with different values or types
	ChangeMissing    = "missing"    // the new document lacks the path
	ChangeUnexpected = "unexpected" // only the new document has the path
	ChangeDocument   = "document"   // the whole document: Note says what
)

// FieldDiff is one path at which the expected new document (Want: transform of the old one)
// and the new store's document (Got) differ.
type FieldDiff struct {
	Path   string `json:"path"` // dotted; empty for a whole-document difference
	Change string `json:"change"`
	Want   *Value `json:"want"` // nil when that side has nothing at the path
	Got    *Value `json:"got"`
	// Note is a fixed description of a whole-document difference ("missing in the new
	// store"); it never holds document values.
	Note string `json:"note,omitempty"`
	// Detail is text the verifier recorded that may quote values (a transform error); shown
	// only with values, like Value.Value.
	Detail *string `json:"detail,omitempty"`
}

// Value is one side of a field difference. Type and Hash are always given; Value only when the
// report includes values.
type Value struct {
	Type string `json:"type"` // the BSON value's Go type as the verifier recorded it: int64, string, bson.D, …
	// Hash is "sha256:" and the first 16 hex digits of the SHA-256 of the value's canonical
	// extended JSON as recorded (values longer than 60 characters are recorded cut to 57 and
	// "...", so long values that share a beginning hash alike). Equal hashes mean equal
	// values; a value with few possibilities can be guessed from its hash.
	Hash  string  `json:"hash"`
	Value *string `json:"value,omitempty"`
}

// Gap is something a verification did not cover. Blocking gaps fail the verdict.
type Gap struct {
	What     string `json:"what"`
	Why      string `json:"why"`
	Blocking bool   `json:"blocking"`
}

// Event is one change in the migration's audit trail.
type Event struct {
	At      time.Time `json:"at"`
	Kind    string    `json:"kind"` // "spec", "phase", "flags", "backfill"
	Subject string    `json:"subject"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Who     string    `json:"who"`
	Why     string    `json:"why"`
}

// Gate is one cutover gate's result at generation time.
type Gate struct {
	Gate   string `json:"gate"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Lag is one change follower's last reported lag.
type Lag struct {
	Component string    `json:"component"`
	Owner     string    `json:"owner"`
	LagMillis int64     `json:"lag_ms"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DeadLetters counts dead letters by direction.
type DeadLetters struct {
	Forward int64 `json:"forward"`
	Reverse int64 `json:"reverse"`
}
