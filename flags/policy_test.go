package flags_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tandemdb/tandem/flags"
)

// TestPolicyForFollowsThePhaseTable checks PolicyFor against the phase table of
// docs/architecture.md and flags/README.md, row by row, with the flags that modify a row.
func TestPolicyForFollowsThePhaseTable(t *testing.T) {
	const (
		W = flags.PathWatchdog
		B = flags.PathBackfill
		F = flags.PathForwardCDC
		R = flags.PathReverseCDC
		V = flags.PathVerify
	)
	old := func(phase string) flags.Values { return flags.Values{Phase: phase, ReadSource: flags.ReadOld} }
	with := func(v flags.Values, f func(*flags.Values)) flags.Values { f(&v); return v }
	tests := []struct {
		name string
		in   flags.Values
		want flags.Policy
	}{
		{"off", old(flags.PhaseOff),
			flags.Policy{Phase: flags.PhaseOff, WriteConverge: flags.ConvergeNone, OnConvergeFailure: flags.FailureNone}},
		{"empty phase is off", flags.Values{},
			flags.Policy{Phase: flags.PhaseOff, WriteConverge: flags.ConvergeNone, OnConvergeFailure: flags.FailureNone}},
		{"unknown phase is off", old("sideways"),
			flags.Policy{Phase: flags.PhaseOff, WriteConverge: flags.ConvergeNone, OnConvergeFailure: flags.FailureNone}},
		{"off ignores write_block and shadow reads", with(old(flags.PhaseOff), func(v *flags.Values) { v.WriteBlock, v.ShadowReadPercent = true, 50 }),
			flags.Policy{Phase: flags.PhaseOff, WriteConverge: flags.ConvergeNone, OnConvergeFailure: flags.FailureNone}},
		{"shadow", old(flags.PhaseShadow),
			flags.Policy{Phase: flags.PhaseShadow, WriteConverge: flags.ConvergeAsync, OnConvergeFailure: flags.FailureInvisible,
				Paths: []flags.Path{B, F, V}}},
		{"shadow with shadow reads", with(old(flags.PhaseShadow), func(v *flags.Values) { v.ShadowReadPercent = 12.5 }),
			flags.Policy{Phase: flags.PhaseShadow, WriteConverge: flags.ConvergeAsync, OnConvergeFailure: flags.FailureInvisible,
				ShadowReadPercent: 12.5, Paths: []flags.Path{B, F, V}}},
		{"shadow never reads new", with(old(flags.PhaseShadow), func(v *flags.Values) { v.ReadSource = flags.ReadNew }),
			flags.Policy{Phase: flags.PhaseShadow, WriteConverge: flags.ConvergeAsync, OnConvergeFailure: flags.FailureInvisible,
				Paths: []flags.Path{B, F, V}}},
		{"dual", old(flags.PhaseDual),
			flags.Policy{Phase: flags.PhaseDual, WriteConverge: flags.ConvergeSync, OnConvergeFailure: flags.FailureOldReply,
				Paths: []flags.Path{W, B, F, V}}},
		{"dual with write_block", with(old(flags.PhaseDual), func(v *flags.Values) { v.WriteBlock = true }),
			flags.Policy{Phase: flags.PhaseDual, WriteConverge: flags.ConvergeSync, OnConvergeFailure: flags.FailureOldReply,
				BlockWrites: true, Paths: []flags.Path{W, B, F, V}}},
		{"cutover", flags.Values{Phase: flags.PhaseCutover, ReadSource: flags.ReadNew},
			flags.Policy{Phase: flags.PhaseCutover, WriteConverge: flags.ConvergeSync, OnConvergeFailure: flags.FailureWriteConcernError,
				ReadsFromNew: true, Paths: []flags.Path{W, F, R, V}}},
		{"cutover with read_source old", old(flags.PhaseCutover),
			flags.Policy{Phase: flags.PhaseCutover, WriteConverge: flags.ConvergeSync, OnConvergeFailure: flags.FailureWriteConcernError,
				Paths: []flags.Path{W, F, R, V}}},
		{"finalized", flags.Values{Phase: flags.PhaseFinalized, ReadSource: flags.ReadNew},
			flags.Policy{Phase: flags.PhaseFinalized, WriteConverge: flags.ConvergeSync, OnConvergeFailure: flags.FailureWriteConcernError,
				ReadsFromNew: true, Paths: []flags.Path{R}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flags.PolicyFor(tt.in)
			assert.Equal(t, tt.want.Phase, got.Phase)
			assert.Equal(t, tt.want.WriteConverge, got.WriteConverge)
			assert.Equal(t, tt.want.OnConvergeFailure, got.OnConvergeFailure)
			assert.Equal(t, tt.want.BlockWrites, got.BlockWrites)
			assert.Equal(t, tt.want.ReadsFromNew, got.ReadsFromNew)
			assert.Equal(t, tt.want.ShadowReadPercent, got.ShadowReadPercent)
			assert.ElementsMatch(t, tt.want.Paths, got.Paths)
			for _, p := range flags.AllPaths {
				assert.Equal(t, slices.Contains(tt.want.Paths, p), got.Runs(p), "Runs(%s)", p)
			}
		})
	}
}

// TestPolicyForCoversEveryPhase: every phase has its own row, and its paths are listed in
// AllPaths order.
func TestPolicyForCoversEveryPhase(t *testing.T) {
	for _, phase := range flags.Phases {
		p := flags.PolicyFor(flags.Values{Phase: phase, ReadSource: flags.ReadNew})
		assert.Equal(t, phase, p.Phase)
		last := -1
		for _, path := range p.Paths {
			i := slices.Index(flags.AllPaths, path)
			assert.Greater(t, i, last, "phase %s: %s out of AllPaths order", phase, path)
			last = i
		}
	}
}

// TestAdvanceTarget: where Advance goes from each phase, which the dashboard and completion
// offer; from dual the way on is Cutover.
func TestAdvanceTarget(t *testing.T) {
	want := map[string]string{
		flags.PhaseOff: flags.PhaseShadow, flags.PhaseShadow: flags.PhaseDual, flags.PhaseDual: "",
		flags.PhaseCutover: flags.PhaseFinalized, flags.PhaseFinalized: "", "nonsense": "",
	}
	for from, to := range want {
		assert.Equal(t, to, flags.AdvanceTarget(from), "from %s", from)
	}
}
