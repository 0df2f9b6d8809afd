package report

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Report is one release report: what `tandem report` stores and renders. Its JSON is the
// documented schema (schema/report-v1.json, SchemaVersion).
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	ID            string    `json:"id"`
	Migration     string    `json:"migration"`
	GeneratedAt   time.Time `json:"generated_at"`
	Spec          Spec      `json:"spec"`
	AsOf          AsOf      `json:"as_of"`
	Verdict       Verdict   `json:"verdict"`
	Coverage      Coverage  `json:"coverage"`
	// Verification holds the counts by kind, the drift, the top mismatches and the gaps.
	Verification Verification      `json:"verification"`
	Phase        string            `json:"phase"`
	Flags        map[string]string `json:"flags"`
	History      []Event           `json:"history"`
	Gates        []Gate            `json:"gates"`
	Lags         []Lag             `json:"lags"`
	DeadLetters  DeadLetters       `json:"dead_letters"`
	// IncludesValues says whether this rendering carries document values.
	IncludesValues bool `json:"includes_values"`
	// SignOffs are read from the audit trail at each rendering, oldest first.
	SignOffs []SignOff `json:"sign_offs"`
}

// Spec names the spec version the report judges and its budget.
type Spec struct {
	Name           string `json:"name"`
	Version        string `json:"version"`
	MismatchBudget int64  `json:"mismatch_budget"`
}

// AsOf is when and where in the change history the verification stands: its finish time and
// position. Time is nil when there is no verification; Position empty when none is recorded.
type AsOf struct {
	Time     *time.Time `json:"time"`
	Position string     `json:"position"`
}

// Verdict is PASS or FAIL with every reason.
type Verdict struct {
	Result    string   `json:"result"`
	Reasons   []string `json:"reasons"`
	Confirmed int64    `json:"confirmed_mismatches"`
	Budget    int64    `json:"mismatch_budget"`
}

// Coverage is documents compared ÷ documents in the store. Total and Ratio are nil when the
// verification did not record the store's size.
type Coverage struct {
	Compared int64    `json:"compared"`
	Total    *int64   `json:"total"`
	Ratio    *float64 `json:"ratio"`
}

// SignOff is a recorded sign-off of the report.
type SignOff struct {
	By         string    `json:"by"`
	Comment    string    `json:"comment"`
	Verdict    string    `json:"verdict"` // the verdict that was signed
	RecordedBy string    `json:"recorded_by"`
	At         time.Time `json:"at"`
}

// Generate reads everything a report holds from src and judges the verification. id and now
// label the report; nothing is stored.
func Generate(ctx context.Context, src Source, name, id string, now time.Time) (Report, error) {
	m, err := src.Migration(ctx, name)
	if err != nil {
		return Report{}, err
	}
	r := Report{
		SchemaVersion: SchemaVersion, ID: id, Migration: name, GeneratedAt: now.UTC(),
		Spec:  Spec{Name: m.SpecName, Version: m.SpecVersion, MismatchBudget: m.MismatchBudget},
		Phase: m.Phase, Flags: m.Flags,
	}
	if r.Flags == nil {
		r.Flags = map[string]string{}
	}
	if r.Verification, err = src.Verification(ctx, name); err != nil {
		return Report{}, fmt.Errorf("reading the verification of %s: %w", name, err)
	}
	if r.History, err = src.History(ctx, name); err != nil {
		return Report{}, fmt.Errorf("reading the history of %s: %w", name, err)
	}
	if r.Gates, err = src.Gates(ctx, name); err != nil {
		return Report{}, fmt.Errorf("checking the gates of %s: %w", name, err)
	}
	if r.Lags, err = src.Lags(ctx, name); err != nil {
		return Report{}, fmt.Errorf("reading the change lags of %s: %w", name, err)
	}
	if r.DeadLetters, err = src.DeadLetters(ctx, name); err != nil {
		return Report{}, fmt.Errorf("counting the dead letters of %s: %w", name, err)
	}
	r.normalize()
	v := r.Verification
	r.AsOf = AsOf{Time: v.Finished, Position: v.Position}
	r.Coverage = coverage(v)
	r.Verdict = Judge(v, m.MismatchBudget)
	return r, nil
}

// normalize turns nil lists into empty ones, so that the JSON always has arrays.
func (r *Report) normalize() {
	v := &r.Verification
	if v.Drift == nil {
		v.Drift = []DriftPoint{}
	}
	if v.Top == nil {
		v.Top = []Mismatch{}
	}
	for i := range v.Top {
		if v.Top[i].Fields == nil {
			v.Top[i].Fields = []FieldDiff{}
		}
	}
	if v.NotCovered == nil {
		v.NotCovered = []Gap{}
	}
	if r.History == nil {
		r.History = []Event{}
	}
	if r.Gates == nil {
		r.Gates = []Gate{}
	}
	if r.Lags == nil {
		r.Lags = []Lag{}
	}
	if r.SignOffs == nil {
		r.SignOffs = []SignOff{}
	}
}

func coverage(v Verification) Coverage {
	c := Coverage{Compared: v.Compared, Total: v.Total}
	if v.Total != nil && *v.Total > 0 {
		ratio := float64(v.Compared) / float64(*v.Total)
		c.Ratio = &ratio
	}
	return c
}

// Judge is the verdict on v against a budget of confirmed mismatches: PASS only when a
// verification was recorded, went through every key, left no blocking gap, and confirmed at
// most budget mismatches. Every reason for a FAIL is listed; a PASS gives the one reason.
func Judge(v Verification, budget int64) Verdict {
	confirmed := v.Counts.Confirmed()
	out := Verdict{Result: Pass, Confirmed: confirmed, Budget: budget}
	fail := func(format string, args ...any) {
		out.Result = Fail
		out.Reasons = append(out.Reasons, fmt.Sprintf(format, args...))
	}
	switch {
	case !v.Found:
		fail("no verification recorded: run `tandem verify` first")
	case !v.Complete:
		fail("the verification did not go through every key")
	}
	for _, g := range v.NotCovered {
		if g.Blocking {
			fail("not covered: %s (%s)", g.What, g.Why)
		}
	}
	if confirmed > budget {
		fail("%d confirmed mismatches exceed the budget of %d (%s)", confirmed, budget, countsLine(v.Counts))
	}
	if out.Result == Pass {
		out.Reasons = []string{fmt.Sprintf("%d confirmed mismatches within the budget of %d; %d documents compared, every key covered",
			confirmed, budget, v.Compared)}
	}
	return out
}

// countsLine lists the non-zero checked counts: "missing 1, differing 2".
func countsLine(c Counts) string {
	var parts []string
	for _, k := range Kinds {
		if n, ok := c.ByKind(k); ok && n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	return strings.Join(parts, ", ")
}

// WithoutValues returns the report with every document value and value-quoting detail left
// out (paths, types and hashes stay). It does not modify r.
func (r Report) WithoutValues() Report {
	r.IncludesValues = false
	top := make([]Mismatch, len(r.Verification.Top))
	for i, m := range r.Verification.Top {
		fields := make([]FieldDiff, len(m.Fields))
		for j, f := range m.Fields {
			f.Want, f.Got, f.Detail = stripValue(f.Want), stripValue(f.Got), nil
			fields[j] = f
		}
		m.Fields = fields
		top[i] = m
	}
	r.Verification.Top = top
	return r
}

func stripValue(v *Value) *Value {
	if v == nil {
		return nil
	}
	return &Value{Type: v.Type, Hash: v.Hash}
}
