package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/transform"
)

// CatalogSource is the Source over what the catalog holds today: the verification summaries
// the verifier saves (catalog.VerifySummary, one per run) and the mismatches it records, the
// audit trail, the change-lag records and the dead letters; the gates come from the flags
// manager. What those summaries do not record is left absent and listed in NotCovered:
// the store's size (so coverage is compared documents only), invariants, indexes, pending
// differences and a change-history position.
type CatalogSource struct {
	// Catalog is read for everything but the spec and the gates. Required.
	Catalog *catalog.Catalog
	// Spec returns the parsed spec of a migration, for its mismatch budget; false when this
	// process does not have it. Required.
	Spec func(name string) (*transform.Spec, bool)
	// CheckGates evaluates the cutover gates without changing anything (flags.Manager.CheckGates).
	// Required.
	CheckGates func(ctx context.Context, name string) ([]flags.GateResult, error)
	// DriftRuns is how many of the newest verification runs make the drift chart. Optional;
	// default 200.
	DriftRuns int64
}

var _ Source = CatalogSource{}

// OriginCatalogSummary is the Verification.Origin of a CatalogSource.
const OriginCatalogSummary = "catalog verification summary"

// Migration reads the migration from the catalog and its budget from its spec.
func (s CatalogSource) Migration(ctx context.Context, name string) (MigrationState, error) {
	m, err := s.Catalog.Migration(ctx, name)
	if err != nil {
		if errors.Is(err, catalog.ErrNotFound) {
			return MigrationState{}, fmt.Errorf("%w %s: %w", ErrUnknownMigration, name, catalog.ErrNotFound)
		}
		return MigrationState{}, err
	}
	spec, ok := s.Spec(name)
	if !ok {
		return MigrationState{}, fmt.Errorf("migration %s is not run by this server, which therefore lacks its spec (and mismatch budget): %w: %w",
			name, ErrUnknownMigration, catalog.ErrNotFound)
	}
	if spec.Version != m.SpecVersion {
		// The budget belongs to a spec version: never judge one version by another's.
		return MigrationState{}, fmt.Errorf("%w: this server runs spec version %s of %s, but the catalog's current version is %s: ask a server that runs it",
			ErrSpecVersion, spec.Version, name, m.SpecVersion)
	}
	fl := make(map[string]string, len(m.Flags))
	for k, v := range m.Flags {
		fl[k] = v
	}
	return MigrationState{
		Name: name, SpecName: spec.Name, SpecVersion: m.SpecVersion,
		MismatchBudget: spec.Verify.MismatchBudget, Phase: m.Phase, Flags: fl,
	}, nil
}

// Verification reads the newest verification run's state (verifystate.go) or, for a migration
// verified before runs existed, the newest verification summary and the ones before it for the
// drift.
func (s CatalogSource) Verification(ctx context.Context, name string) (Verification, error) {
	if v, ok, err := s.runVerification(ctx, name); err != nil || ok {
		return v, err
	}
	runs := s.DriftRuns
	if runs <= 0 {
		runs = 200
	}
	reports, err := s.Catalog.Reports(ctx, name, catalog.ReportKindVerify, runs)
	if err != nil {
		return Verification{}, err
	}
	v := Verification{Origin: OriginCatalogSummary}
	if len(reports) == 0 {
		return v, nil
	}
	var sum catalog.VerifySummary
	if err := json.Unmarshal([]byte(reports[0].Content), &sum); err != nil {
		v.NotCovered = append(v.NotCovered, Gap{What: "the newest verification",
			Why: fmt.Sprintf("its summary (saved %s) cannot be read: %v", reports[0].At.UTC().Format(time.RFC3339), err), Blocking: true})
		return v, nil
	}
	v.Found = true
	v.fromSummary(sum)
	v.Drift = drift(reports)
	// The catalog keeps found_at to the millisecond: the window starts at the run's millisecond.
	if v.Started != nil && v.Finished != nil {
		top, err := s.Catalog.MismatchesFoundBetween(ctx, name, "verify", v.Started.Truncate(time.Millisecond), *v.Finished, MaxTopMismatches)
		if err != nil {
			return Verification{}, err
		}
		for _, m := range top {
			v.Top = append(v.Top, mismatchOf(m))
		}
	}
	return v, nil
}

// fromSummary fills v from a saved summary, and says what such a summary does not cover.
func (v *Verification) fromSummary(sum catalog.VerifySummary) {
	if !sum.Started.IsZero() {
		t := sum.Started.UTC()
		v.Started = &t
	}
	if !sum.Finished.IsZero() {
		t := sum.Finished.UTC()
		v.Finished = &t
	}
	v.Complete = sum.Aborted == "" && v.Finished != nil
	v.Compared = sum.Keys
	v.Counts = Counts{Missing: ptr(sum.Missing), Extra: ptr(sum.Extra), Differing: ptr(sum.Differing), Untransformable: ptr(sum.Untransformable)}
	if sum.Aborted != "" {
		v.NotCovered = append(v.NotCovered, Gap{What: "the keys after the point where the run ended",
			Why: "the run was aborted: " + transform.RedactText(sum.Aborted), Blocking: true})
	}
	if unkeyed := sum.Errors - sum.Untransformable; unkeyed > 0 {
		v.NotCovered = append(v.NotCovered, Gap{What: fmt.Sprintf("%d documents without a readable key", unkeyed),
			Why: "they could not be compared", Blocking: true})
	}
	if sum.Repaired > 0 || sum.RepairFailed > 0 {
		v.NotCovered = append(v.NotCovered, Gap{What: "the repairs",
			Why: fmt.Sprintf("%d mismatches were repaired (%d repairs failed) but not verified again; a new verification confirms them", sum.Repaired, sum.RepairFailed)})
	}
	v.NotCovered = append(v.NotCovered,
		Gap{What: "documents in the store", Why: "the summary does not record the store's size: coverage counts compared documents only"},
		Gap{What: "invariants", Why: "this verifier does not check invariants: invariant_broken is absent"},
		Gap{What: "indexes", Why: "this verifier does not compare the new store's indexes with the spec's: index_missing is absent"},
		Gap{What: "pending differences", Why: "this verifier rechecks each difference once and keeps no settle state: pending is absent"},
		Gap{What: "position", Why: "the summary records no change-history position, only the finish time"},
	)
}

// drift turns the saved summaries (newest first) into points, oldest first; a summary that
// cannot be read is left out.
func drift(reports []catalog.Report) []DriftPoint {
	out := make([]DriftPoint, 0, len(reports))
	for i := len(reports) - 1; i >= 0; i-- {
		var sum catalog.VerifySummary
		if json.Unmarshal([]byte(reports[i].Content), &sum) != nil {
			continue
		}
		at := sum.Finished
		if at.IsZero() {
			at = reports[i].At
		}
		out = append(out, DriftPoint{At: at.UTC(), Confirmed: sum.Mismatches})
	}
	return out
}

// mismatchOf reads a recorded mismatch.
func mismatchOf(m catalog.Mismatch) Mismatch {
	kind, fields := parseDiff(m.Diff)
	out := Mismatch{Key: adapters.KeyString(m.Key), Kind: kind, Source: m.Source, FirstSeen: m.FoundAt.UTC(), Fields: fields}
	if m.RepairedAt != nil {
		t := m.RepairedAt.UTC()
		out.RepairedAt = &t
	}
	return out
}

// History reads the audit trail, less the sign-offs (a report shows its own).
func (s CatalogSource) History(ctx context.Context, name string) ([]Event, error) {
	entries, err := s.Catalog.Audit(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	out := make([]Event, 0, len(entries))
	for _, e := range entries {
		if e.Kind == catalog.KindSignOff {
			continue
		}
		out = append(out, Event{At: e.At.UTC(), Kind: e.Kind, Subject: e.Subject, From: e.From, To: e.To, Who: e.Who, Why: e.Why})
	}
	return out, nil
}

// Gates runs the gates.
func (s CatalogSource) Gates(ctx context.Context, name string) ([]Gate, error) {
	res, err := s.CheckGates(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]Gate, len(res))
	for i, g := range res {
		out[i] = Gate{Gate: g.Gate, OK: g.OK, Detail: g.Detail}
	}
	return out, nil
}

// Lags reads the change-lag records.
func (s CatalogSource) Lags(ctx context.Context, name string) ([]Lag, error) {
	lags, err := s.Catalog.Lags(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]Lag, len(lags))
	for i, l := range lags {
		out[i] = Lag{Component: l.Component, Owner: l.Owner, LagMillis: l.Lag.Milliseconds(), UpdatedAt: l.UpdatedAt.UTC()}
	}
	return out, nil
}

// DeadLetters counts the dead letters.
func (s CatalogSource) DeadLetters(ctx context.Context, name string) (DeadLetters, error) {
	fwd, err := s.Catalog.CountDeadLettersByDirection(ctx, name, catalog.DirectionForward)
	if err != nil {
		return DeadLetters{}, err
	}
	rev, err := s.Catalog.CountDeadLettersByDirection(ctx, name, catalog.DirectionReverse)
	if err != nil {
		return DeadLetters{}, err
	}
	return DeadLetters{Forward: fwd, Reverse: rev}, nil
}

func ptr(n int64) *int64 { return &n }
