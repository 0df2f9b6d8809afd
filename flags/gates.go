package flags

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandemdb/tandem/catalog"
)

// Gate names.
const (
	GateVerification = "verification"
	GateChangeLag    = "change_lag"
	GateReversePath  = "reverse_path"
)

// ReportKindVerify is the catalog report kind whose Content is a VerifySummary in JSON.
const ReportKindVerify = "verify"

// Components that report change lag (catalog.ReportLag); the change_lag gate considers every
// component's records, these are only the names tandem itself uses.
const (
	ComponentForward = "cdc-forward"
	ComponentReverse = "cdc-reverse"
)

// VerifySummary is what the verification gate reads: the JSON Content of a catalog report of
// kind "verify", saved by the verifier when a verification run ends.
type VerifySummary struct {
	Keys       int64     `json:"keys"`       // keys compared
	Mismatches int64     `json:"mismatches"` // keys that differed (after rechecks)
	Clean      bool      `json:"clean"`      // the run completed and found no mismatch
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished"`
}

// GateConfig holds the cutover gates' limits. Every field is optional; zero means the default.
type GateConfig struct {
	// VerifyMaxAge is how long ago the newest clean verification may have finished.
	// Default 15m.
	VerifyMaxAge time.Duration
	// LagFreshness is how recent a change-lag record must be to count. Default 30s.
	LagFreshness time.Duration
	// MaxLag is the largest change lag, over every fresh record, that passes. Default 5s.
	MaxLag time.Duration
	// VerifyMaxBacklog is the most keys waiting for a verification recheck that passes, for a
	// run that names no bound of its own (the spec's verify.max_backlog). Default 1000.
	VerifyMaxBacklog int64
}

// Gate defaults.
const (
	DefaultVerifyMaxAge = 15 * time.Minute
	DefaultLagFreshness = 30 * time.Second
	DefaultMaxLag       = 5 * time.Second
	DefaultMaxBacklog   = 1000
)

func (g GateConfig) withDefaults() GateConfig {
	if g.VerifyMaxAge <= 0 {
		g.VerifyMaxAge = DefaultVerifyMaxAge
	}
	if g.LagFreshness <= 0 {
		g.LagFreshness = DefaultLagFreshness
	}
	if g.MaxLag <= 0 {
		g.MaxLag = DefaultMaxLag
	}
	if g.VerifyMaxBacklog <= 0 {
		g.VerifyMaxBacklog = DefaultMaxBacklog
	}
	return g
}

// CheckGates runs every cutover gate for a migration without changing anything, so an operator
// can see where a cutover stands. Cutover runs the same checks.
func (m *Manager) CheckGates(ctx context.Context, migration string) ([]GateResult, error) {
	if _, _, err := m.load(ctx, migration); err != nil {
		return nil, err
	}
	return m.checkGates(ctx, migration), nil
}

// checkGates runs every gate, in a fixed order; a gate that cannot read what it needs fails.
func (m *Manager) checkGates(ctx context.Context, migration string) []GateResult {
	now := m.now()
	return []GateResult{
		m.verificationGate(ctx, migration, now),
		m.changeLagGate(ctx, migration, now),
		m.reversePathGate(ctx, migration),
	}
}

// verificationGate reads the migration's newest verification run (catalog.VerifyState) and,
// when there is none, the newest verification summary (a report of kind "verify").
func (m *Manager) verificationGate(ctx context.Context, migration string, now time.Time) GateResult {
	st, err := m.cat.VerifyState(ctx, migration)
	switch {
	case err == nil:
		return m.verifyStateGate(ctx, st, now)
	case !errors.Is(err, catalog.ErrNotFound):
		return GateResult{Gate: GateVerification, Detail: err.Error()}
	}
	return m.verifySummaryGate(ctx, migration, now)
}

// verifyStateGate passes when the run's full pass covered every partition and is recent (a
// run of mode once finished within VerifyMaxAge; a continuous one recorded drift within it,
// so it is alive), no confirmed mismatch is outstanding, and the recheck backlog is within
// its bound. It names every condition that fails.
func (m *Manager) verifyStateGate(ctx context.Context, st catalog.VerifyState, now time.Time) GateResult {
	r := GateResult{Gate: GateVerification}
	var fails []string
	run := fmt.Sprintf("verification %s (%s)", st.RunID, st.Mode)
	switch {
	case !st.FullPassDone:
		fails = append(fails, fmt.Sprintf("its full pass is not done: %d of %d partitions uncovered, %d of ~%d keys compared",
			len(st.Uncovered), len(st.Partitions), st.Compared, st.Total))
	case st.Mode != "continuous" && st.Finished.IsZero():
		fails = append(fails, fmt.Sprintf("it is still rechecking (generation %d)", st.Generation))
	case st.Mode != "continuous" && now.Sub(st.Finished) > m.gates.VerifyMaxAge:
		fails = append(fails, fmt.Sprintf("it finished %s ago, limit %s", roundDur(now.Sub(st.Finished)), m.gates.VerifyMaxAge))
	case st.Mode == "continuous":
		drift, err := m.cat.VerifyDrift(ctx, st.Migration, st.RunID, now.Add(-m.gates.VerifyMaxAge))
		if err != nil {
			fails = append(fails, err.Error())
		} else if len(drift) == 0 {
			fails = append(fails, fmt.Sprintf("it recorded no drift in the last %s; is the verify path running?", m.gates.VerifyMaxAge))
		}
	}
	if n := st.Confirmed.Total(); n > 0 {
		c := st.Confirmed
		fails = append(fails, fmt.Sprintf("%d confirmed mismatches outstanding (missing %d, extra %d, differing %d, untransformable %d, invariant broken %d, index missing %d)",
			n, c.Missing, c.Extra, c.Differing, c.Untransformable, c.InvariantBroken, c.IndexMissing))
	}
	limit := st.MaxBacklog
	if limit <= 0 {
		limit = m.gates.VerifyMaxBacklog
	}
	if st.Backlog > limit {
		fails = append(fails, fmt.Sprintf("recheck backlog %d keys > limit %d", st.Backlog, limit))
	}
	if len(fails) > 0 {
		r.Detail = run + ": " + strings.Join(fails, "; ")
		return r
	}
	r.OK = true
	r.Detail = fmt.Sprintf("%s: full pass compared %d keys, no confirmed mismatch, recheck backlog %d <= %d", run, st.Compared, st.Backlog, limit)
	return r
}

// verifySummaryGate judges the newest verification summary.
func (m *Manager) verifySummaryGate(ctx context.Context, migration string, now time.Time) GateResult {
	r := GateResult{Gate: GateVerification}
	reports, err := m.cat.Reports(ctx, migration, ReportKindVerify, 1)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	if len(reports) == 0 {
		r.Detail = "no verification report; run a verification first"
		return r
	}
	var s VerifySummary
	if err := json.Unmarshal([]byte(reports[0].Content), &s); err != nil {
		r.Detail = fmt.Sprintf("newest verification report (%s) is not a verification summary: %v", reports[0].At.UTC().Format(time.RFC3339), err)
		return r
	}
	switch {
	case s.Finished.IsZero():
		r.Detail = fmt.Sprintf("newest verification (started %s) has not finished", s.Started.UTC().Format(time.RFC3339))
	case !s.Clean || s.Mismatches > 0:
		r.Detail = fmt.Sprintf("newest verification found %d mismatches in %d keys (want a clean run)", s.Mismatches, s.Keys)
	case now.Sub(s.Finished) > m.gates.VerifyMaxAge:
		r.Detail = fmt.Sprintf("newest clean verification (%d keys) finished %s ago, limit %s", s.Keys, roundDur(now.Sub(s.Finished)), m.gates.VerifyMaxAge)
	default:
		r.OK = true
		r.Detail = fmt.Sprintf("clean verification of %d keys finished %s ago (limit %s)", s.Keys, roundDur(max(now.Sub(s.Finished), 0)), m.gates.VerifyMaxAge)
	}
	return r
}

func (m *Manager) changeLagGate(ctx context.Context, migration string, now time.Time) GateResult {
	r := GateResult{Gate: GateChangeLag}
	lags, err := m.cat.Lags(ctx, migration)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	var worst catalog.Lag
	fresh := 0
	for _, l := range lags {
		if now.Sub(l.UpdatedAt) > m.gates.LagFreshness {
			continue
		}
		if fresh == 0 || l.Lag > worst.Lag {
			worst = l
		}
		fresh++
	}
	switch {
	case fresh == 0:
		r.Detail = fmt.Sprintf("no change-lag report in the last %s (%d older records); is change capture running?", m.gates.LagFreshness, len(lags))
	case worst.Lag > m.gates.MaxLag:
		r.Detail = fmt.Sprintf("change lag %s (%s on %s) > limit %s", roundDur(worst.Lag), worst.Component, worst.Owner, m.gates.MaxLag)
	default:
		r.OK = true
		r.Detail = fmt.Sprintf("max change lag %s over %d fresh reports <= limit %s", roundDur(worst.Lag), fresh, m.gates.MaxLag)
	}
	return r
}

func (m *Manager) reversePathGate(ctx context.Context, migration string) GateResult {
	r := GateResult{Gate: GateReversePath}
	n, err := m.cat.CountDeadLettersByDirection(ctx, migration, catalog.DirectionReverse)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	if n > 0 {
		r.Detail = fmt.Sprintf("%d reverse dead letters (want 0): documents new cannot hand back to old", n)
		return r
	}
	if m.reverseCheck == nil {
		r.OK = true
		r.Detail = "0 reverse dead letters (no reverse check configured)"
		return r
	}
	if err := m.reverseCheck(ctx, migration); err != nil {
		r.Detail = fmt.Sprintf("0 reverse dead letters, but the reverse check failed: %v", err)
		return r
	}
	r.OK = true
	r.Detail = "0 reverse dead letters; reverse check passed"
	return r
}

// roundDur rounds a duration for a message.
func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
