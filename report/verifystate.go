package report

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/catalog"
)

// OriginVerifyRun is the Verification.Origin of a report filled from a verification run's
// records (package verify's tasks, generations and mismatches), followed by the run's id.
const OriginVerifyRun = "catalog verification run"

// kindNotes are the fixed descriptions of whole-document mismatches: they never hold values.
var kindNotes = map[catalog.MismatchKind]string{
	catalog.KindMissing:         "document missing from the new store",
	catalog.KindExtra:           "document in the new store but not in the old",
	catalog.KindUntransformable: "the old document cannot be transformed or the new store cannot hold it",
	catalog.KindInvariantBroken: "the new document breaks an invariant of the spec",
	catalog.KindIndexMissing:    "the new store lacks an index the spec requires",
}

// runVerification fills a Verification from the newest verification run; ok is false when the
// migration has no run (its verifications predate runs, or there were none).
func (s CatalogSource) runVerification(ctx context.Context, name string) (v Verification, ok bool, err error) {
	st, err := s.Catalog.VerifyState(ctx, name)
	if errors.Is(err, catalog.ErrNotFound) {
		return Verification{}, false, nil
	}
	if err != nil {
		return Verification{}, false, err
	}
	v = Verification{Found: true, Origin: OriginVerifyRun + " " + st.RunID + " (" + st.Mode + ")", Compared: st.Compared}
	started := st.Started.UTC()
	v.Started = &started
	if !st.Finished.IsZero() {
		f := st.Finished.UTC()
		v.Finished = &f
	}
	v.Complete = st.FullPassDone && len(st.Uncovered) == 0
	c := st.Confirmed
	v.Counts = Counts{Missing: ptr(c.Missing), Extra: ptr(c.Extra), Differing: ptr(c.Differing),
		Untransformable: ptr(c.Untransformable), InvariantBroken: ptr(c.InvariantBroken), IndexMissing: ptr(c.IndexMissing)}
	v.Pending = ptr(st.Pending)
	if st.Total > 0 {
		v.Total = ptr(st.Total)
	}
	if !st.FullPassDone {
		v.NotCovered = append(v.NotCovered, Gap{What: "the full pass", Why: fmt.Sprintf("generation 0 has not covered every partition yet (generation %d, %d keys compared)", st.Generation, st.Compared), Blocking: true})
	}
	for _, u := range st.Uncovered {
		what := fmt.Sprintf("partition %d of the %s store", u.Partition, u.Store)
		if u.Store == catalog.StoreJoin {
			what = "the join of both stores' scans"
		}
		if u.After != "" {
			what += " after key " + u.After
		}
		v.NotCovered = append(v.NotCovered, Gap{What: what, Why: u.Reason, Blocking: true})
	}
	if st.Backlog > 0 {
		v.NotCovered = append(v.NotCovered, Gap{What: fmt.Sprintf("%d keys waiting for a recheck", st.Backlog),
			Why: "they changed or differed and have not been compared again yet; pending differences are not failures"})
	}
	v.NotCovered = append(v.NotCovered, Gap{What: "position", Why: "a verification run records no change-history position, only its times"})

	points, err := s.Catalog.VerifyDrift(ctx, name, st.RunID, time.Time{})
	if err != nil {
		return Verification{}, false, err
	}
	for _, p := range points {
		v.Drift = append(v.Drift, DriftPoint{At: p.At.UTC(), Confirmed: p.Confirmed})
	}
	top, err := s.Catalog.VerifyMismatches(ctx, name, catalog.VerifyMismatchQuery{
		RunID: st.RunID, States: []string{catalog.MismatchConfirmed}, Limit: MaxTopMismatches, IncludeValues: true})
	if err != nil {
		return Verification{}, false, err
	}
	for _, m := range top {
		v.Top = append(v.Top, runMismatch(m))
	}
	return v, true, nil
}

// runMismatch turns a verification run's mismatch record into the report's form. Values are
// kept (a stored report holds them; rendering leaves them out unless asked).
func runMismatch(m catalog.VerifyMismatch) Mismatch {
	out := Mismatch{Key: m.KeyString, Kind: string(m.Kind), Source: "verify", FirstSeen: m.FirstSeen.UTC()}
	last := m.LastSeen.UTC()
	out.LastSeen = &last
	if !m.Repaired.IsZero() {
		r := m.Repaired.UTC()
		out.RepairedAt = &r
	}
	for _, f := range m.Fields {
		d := FieldDiff{Path: f.Path, Want: sideValue(f.WantType, f.WantHash, f.Want), Got: sideValue(f.GotType, f.GotHash, f.Got)}
		switch {
		case d.Want != nil && d.Got != nil:
			d.Change = ChangeDiffers
		case d.Want != nil:
			d.Change = ChangeMissing
		default:
			d.Change = ChangeUnexpected
		}
		out.Fields = append(out.Fields, d)
	}
	if len(out.Fields) == 0 || m.Kind != catalog.KindDiffering {
		d := FieldDiff{Change: ChangeDocument, Note: kindNotes[m.Kind]}
		if m.Detail != "" {
			detail := m.Detail
			d.Detail = &detail
		}
		out.Fields = append(out.Fields, d)
	}
	return out
}

// sideValue is one side of a field difference, nil when that side has nothing at the path.
func sideValue(typ, hash string, value any) *Value {
	if typ == "" {
		return nil
	}
	v := &Value{Type: typ, Hash: "sha256:" + hash}
	if value != nil {
		// The value's relaxed Extended JSON: a one-field document's, less the wrapper.
		if b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: value}}, false, false); err == nil {
			text := strings.TrimSuffix(strings.TrimPrefix(string(b), `{"v":`), "}")
			v.Value = &text
		}
	}
	return v
}
