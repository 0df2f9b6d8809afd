package flags_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
)

// state is what a refused change must leave untouched.
type state struct {
	m     catalog.Migration
	audit []catalog.AuditEntry
}

func readState(t *testing.T, c *catalog.Catalog, migration string) state {
	t.Helper()
	m, err := c.Migration(context.Background(), migration)
	require.NoError(t, err)
	a, err := c.Audit(context.Background(), migration, 0)
	require.NoError(t, err)
	return state{m, a}
}

// putPhase moves a migration straight to a phase through the catalog (test set-up, no rules),
// with read_source as the phase needs it.
func putPhase(t *testing.T, c *catalog.Catalog, migration, phase string) {
	t.Helper()
	m, err := c.Migration(context.Background(), migration)
	require.NoError(t, err)
	rs := flags.ReadOld
	if phase == flags.PhaseCutover || phase == flags.PhaseFinalized {
		rs = flags.ReadNew
	}
	changes := []catalog.FlagChange{{Flag: "read_source", To: rs}}
	if m.Phase != phase {
		changes = append(changes, catalog.FlagChange{Flag: "phase", To: phase})
	}
	_, err = c.SetFlags(context.Background(), migration, m.Revision, changes, "setup", "test setup")
	require.NoError(t, err)
}

func TestRefusedChangesChangeNothing(t *testing.T) {
	c := newCatalog(t)
	mgr := flags.NewManager(c)
	ctx := context.Background()

	type call func() error
	set := func(changes map[string]string) call {
		return func() error { _, err := mgr.Set(ctx, "users", changes, "alice", "test"); return err }
	}
	for _, tc := range []struct {
		name  string
		phase string // the migration's phase before the call
		call  call
		is    error
		msg   string
	}{
		{"unknown flag", "off", set(map[string]string{"phse": "shadow"}), flags.ErrUnknownFlag,
			`unknown flag "phse": valid flags are phase, read_source, shadow_read_percent, write_block`},
		{"unknown flag beside a valid one", "off", set(map[string]string{"write_block": "true", "bogus": "1"}), flags.ErrUnknownFlag, `"bogus"`},
		{"no flags", "off", set(map[string]string{}), flags.ErrBadValue, "no flags given"},
		{"bad phase", "off", set(map[string]string{"phase": "dual2"}), flags.ErrBadValue,
			`phase "dual2": want one of off, shadow, dual, cutover, finalized`},
		{"bad read_source", "cutover", set(map[string]string{"read_source": "newest"}), flags.ErrBadValue, `read_source "newest": want one of old, new`},
		{"percent above 100", "shadow", set(map[string]string{"shadow_read_percent": "150"}), flags.ErrBadValue, `shadow_read_percent "150": want a number from 0 to 100`},
		{"negative percent", "shadow", set(map[string]string{"shadow_read_percent": "-1"}), flags.ErrBadValue, "from 0 to 100"},
		{"percent not a number", "shadow", set(map[string]string{"shadow_read_percent": "ten"}), flags.ErrBadValue, `"ten"`},
		{"percent NaN", "shadow", set(map[string]string{"shadow_read_percent": "NaN"}), flags.ErrBadValue, `"NaN"`},
		{"bad write_block", "dual", set(map[string]string{"write_block": "yes"}), flags.ErrBadValue, `write_block "yes": want true or false`},
		{"bad value beside a valid one", "dual", set(map[string]string{"write_block": "true", "shadow_read_percent": "101"}), flags.ErrBadValue, "shadow_read_percent"},
		{"skipped step", "off", set(map[string]string{"phase": "dual"}), flags.ErrPhaseStep, "one step at a time; the next step is shadow"},
		{"skipped steps", "shadow", set(map[string]string{"phase": "finalized"}), flags.ErrPhaseStep, "the next step is dual"},
		{"into cutover by set", "dual", set(map[string]string{"phase": "cutover"}), flags.ErrPhaseStep, "only through cutover"},
		{"backward by set", "dual", set(map[string]string{"phase": "shadow"}), flags.ErrPhaseStep, "is a rollback: use rollback"},
		{"read new before cutover", "dual", set(map[string]string{"read_source": "new"}), flags.ErrBadValue,
			"read_source=new needs phase cutover or finalized; users would be in phase dual"},
		{"read new with a valid change", "shadow", set(map[string]string{"read_source": "new", "shadow_read_percent": "50", "phase": "dual"}), flags.ErrBadValue, "read_source=new needs"},
		{"read old when finalized", "finalized", set(map[string]string{"read_source": "old"}), flags.ErrBadValue, "old store is retired"},
		{"advance skipping", "off", func() error { _, err := mgr.Advance(ctx, "users", "dual", "a", "b"); return err }, flags.ErrPhaseStep, "the next step is shadow"},
		{"advance into cutover", "dual", func() error { _, err := mgr.Advance(ctx, "users", "", "a", "b"); return err }, flags.ErrPhaseStep, "only through cutover"},
		{"advance past finalized", "finalized", func() error { _, err := mgr.Advance(ctx, "users", "", "a", "b"); return err }, flags.ErrPhaseStep, "last phase"},
		{"advance to unknown phase", "off", func() error { _, err := mgr.Advance(ctx, "users", "shadowy", "a", "b"); return err }, flags.ErrBadValue, `"shadowy"`},
		{"advance backward", "dual", func() error { _, err := mgr.Advance(ctx, "users", "off", "a", "b"); return err }, flags.ErrPhaseStep, "rollback"},
		{"cutover from shadow", "shadow", func() error { _, _, err := mgr.Cutover(ctx, "users", "a", "b"); return err }, flags.ErrPhaseStep, "only from phase dual; users is in phase shadow"},
		{"cutover twice", "cutover", func() error { _, _, err := mgr.Cutover(ctx, "users", "a", "b"); return err }, flags.ErrPhaseStep, "already in cutover"},
		{"rollback without reason", "cutover", func() error { _, err := mgr.Rollback(ctx, "users", "", "alice", ""); return err }, flags.ErrReasonRequired, "say why"},
		{"rollback with a blank reason", "dual", func() error { _, err := mgr.Rollback(ctx, "users", "shadow", "alice", "  \t"); return err }, flags.ErrReasonRequired, "say why"},
		{"rollback from off", "off", func() error { _, err := mgr.Rollback(ctx, "users", "", "alice", "why not"); return err }, flags.ErrPhaseStep, "nothing to roll back"},
		{"rollback from finalized", "finalized", func() error { _, err := mgr.Rollback(ctx, "users", "", "alice", "oops"); return err }, flags.ErrPhaseStep, "old store is retired"},
		{"rollback forward", "shadow", func() error { _, err := mgr.Rollback(ctx, "users", "dual", "alice", "oops"); return err }, flags.ErrPhaseStep, "a phase before shadow, not dual"},
		{"rollback to the same phase", "dual", func() error { _, err := mgr.Rollback(ctx, "users", "dual", "alice", "oops"); return err }, flags.ErrPhaseStep, "not dual"},
		{"rollback to unknown phase", "dual", func() error { _, err := mgr.Rollback(ctx, "users", "of", "alice", "oops"); return err }, flags.ErrBadValue, `"of"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			migration := "users"
			_ = c // each case starts from its own migration state
			register(t, c, migration)
			putPhase(t, c, migration, tc.phase)
			before := readState(t, c, migration)
			err := tc.call()
			require.Error(t, err)
			assert.ErrorIs(t, err, tc.is)
			assert.Contains(t, err.Error(), tc.msg)
			after := readState(t, c, migration)
			assert.Equal(t, before.m, after.m, "the migration is unchanged")
			assert.Equal(t, before.audit, after.audit, "nothing was audited")
		})
	}

	_, err := mgr.Set(ctx, "nobody", map[string]string{"write_block": "true"}, "a", "b")
	assert.ErrorIs(t, err, flags.ErrNotFound)
	assert.ErrorIs(t, err, catalog.ErrNotFound)
	for name, f := range map[string]func() error{
		"get":      func() error { _, err := mgr.Get(ctx, "nobody"); return err },
		"advance":  func() error { _, err := mgr.Advance(ctx, "nobody", "", "a", "b"); return err },
		"cutover":  func() error { _, _, err := mgr.Cutover(ctx, "nobody", "a", "b"); return err },
		"rollback": func() error { _, err := mgr.Rollback(ctx, "nobody", "", "a", "b"); return err },
		"history":  func() error { _, err := mgr.History(ctx, "nobody", 0); return err },
		"gates":    func() error { _, err := mgr.CheckGates(ctx, "nobody"); return err },
		"empty":    func() error { _, err := mgr.Get(ctx, ""); return err },
	} {
		assert.ErrorIs(t, f(), flags.ErrNotFound, name)
	}
}

func TestForwardMoves(t *testing.T) {
	c := newCatalog(t)
	mgr := flags.NewManager(c)
	ctx := context.Background()
	register(t, c, "users")

	v, err := mgr.Get(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseOff, v.Phase)
	assert.Equal(t, flags.ReadOld, v.ReadSource)
	rev := v.Revision

	v, err = mgr.Advance(ctx, "users", "shadow", "alice", "start shadowing")
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseShadow, v.Phase)
	assert.Equal(t, rev+1, v.Revision)

	v, err = mgr.Set(ctx, "users", map[string]string{"phase": "dual", "shadow_read_percent": "12.5", "write_block": "true"}, "bob", "dual writes")
	require.NoError(t, err)
	assert.Equal(t, flags.Values{Phase: "dual", ReadSource: "old", ShadowReadPercent: 12.5, WriteBlock: true, Revision: rev + 2}, v)
	got, err := mgr.Get(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, v, got)

	// The same values again: no change, no audit entry.
	v, err = mgr.Set(ctx, "users", map[string]string{"shadow_read_percent": "12.50", "write_block": "true"}, "bob", "again")
	require.NoError(t, err)
	assert.Equal(t, rev+2, v.Revision)

	mgrPassing := flags.NewManager(c)
	passGates(t, c, "users")
	v, results, err := mgrPassing.Cutover(ctx, "users", "carol", "verified clean")
	require.NoError(t, err)
	require.Len(t, results, 3)
	assert.Equal(t, flags.PhaseCutover, v.Phase)
	assert.Equal(t, flags.ReadNew, v.ReadSource)
	assert.True(t, v.WriteBlock, "cutover leaves write_block alone")

	v, err = mgr.Set(ctx, "users", map[string]string{"write_block": "false", "shadow_read_percent": "0"}, "carol", "unblock")
	require.NoError(t, err)
	v, err = mgr.Advance(ctx, "users", "", "dave", "retire old")
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseFinalized, v.Phase)
	assert.Equal(t, rev+5, v.Revision)

	hist, err := mgr.History(ctx, "users", 0)
	require.NoError(t, err)
	require.Len(t, hist, 6, "spec + 5 flag changes")
	assert.Equal(t, "dave", hist[0].Who, "newest first")
	assert.Equal(t, "retire old", hist[0].Why)
	assert.Equal(t, []catalog.FlagChange{{Flag: "phase", From: "cutover", To: "finalized"}}, hist[0].Changes)
	cut := hist[2]
	assert.Equal(t, "carol", cut.Who)
	assert.Equal(t, []catalog.FlagChange{{Flag: "phase", From: "dual", To: "cutover"}, {Flag: "read_source", From: "old", To: "new"}}, cut.Changes,
		"cutover sets phase and read_source in one change")
	two, err := mgr.History(ctx, "users", 2)
	require.NoError(t, err)
	assert.Equal(t, hist[:2], two)
	_, err = mgr.History(ctx, "users", -1)
	assert.ErrorIs(t, err, flags.ErrBadValue)
}

func TestRollbackTargets(t *testing.T) {
	c := newCatalog(t)
	mgr := flags.NewManager(c)
	ctx := context.Background()
	for _, tc := range []struct{ from, to, want string }{
		{"cutover", "", "dual"},
		{"dual", "", "shadow"},
		{"shadow", "", "off"},
		{"cutover", "shadow", "shadow"},
		{"cutover", "off", "off"},
		{"dual", "off", "off"},
	} {
		t.Run(tc.from+"->"+tc.want, func(t *testing.T) {
			migration := fmt.Sprintf("m-%s-%s", tc.from, tc.want)
			register(t, c, migration)
			putPhase(t, c, migration, tc.from)
			_, err := mgr.Set(ctx, migration, map[string]string{"write_block": "true", "shadow_read_percent": "30"}, "setup", "block writes")
			require.NoError(t, err)
			before, err := mgr.Get(ctx, migration)
			require.NoError(t, err)

			v, err := mgr.Rollback(ctx, migration, tc.to, "oncall", "p99 latency doubled")
			require.NoError(t, err)
			assert.Equal(t, flags.Values{Phase: tc.want, ReadSource: "old", ShadowReadPercent: 30, WriteBlock: false, Revision: before.Revision + 1}, v)

			hist, err := mgr.History(ctx, migration, 1)
			require.NoError(t, err)
			require.Len(t, hist, 1)
			e := hist[0]
			assert.Equal(t, "flags", e.Kind)
			assert.Equal(t, "oncall", e.Who)
			assert.Equal(t, "p99 latency doubled", e.Why)
			assert.Equal(t, v.Revision, e.Revision)
			want := []catalog.FlagChange{{Flag: "phase", From: tc.from, To: tc.want}}
			if before.ReadSource == flags.ReadNew {
				want = append(want, catalog.FlagChange{Flag: "read_source", From: "new", To: "old"})
			}
			want = append(want, catalog.FlagChange{Flag: "write_block", From: "true", To: "false"})
			assert.Equal(t, want, e.Changes, "phase, read_source and write_block in one change")
		})
	}
}

// TestRacingChangesHaveOneWinner races moves that exclude each other: from cutover, finalizing
// and rolling back to dual. Whichever lands first makes every other one either lose the claim
// (ErrConflict) or no longer apply (ErrPhaseStep), so exactly one succeeds.
func TestRacingChangesHaveOneWinner(t *testing.T) {
	c := newCatalog(t)
	mgr := flags.NewManager(c)
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		migration := fmt.Sprintf("race-%d", round)
		register(t, c, migration)
		putPhase(t, c, migration, flags.PhaseCutover)
		before := readState(t, c, migration)

		const racers = 8
		errs := make([]error, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < racers; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				who := fmt.Sprintf("racer-%d", i)
				if i%2 == 0 {
					_, errs[i] = mgr.Advance(ctx, migration, flags.PhaseFinalized, who, "finalize")
				} else {
					_, errs[i] = mgr.Rollback(ctx, migration, flags.PhaseDual, who, "roll back")
				}
			}(i)
		}
		close(start)
		wg.Wait()
		wins, conflicts := 0, 0
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = i
			case errors.Is(err, flags.ErrConflict):
				conflicts++
				assert.ErrorIs(t, err, catalog.ErrConflict)
			default:
				assert.ErrorIs(t, err, flags.ErrPhaseStep, "racer %d", i)
			}
		}
		require.Equal(t, 1, wins, "round %d: %v", round, errs)
		t.Logf("round %d: winner racer-%d, %d conflicts, %d refused after the fact", round, winner, conflicts, racers-1-conflicts)
		after := readState(t, c, migration)
		require.Len(t, after.audit, len(before.audit)+1, "exactly one change is audited")
		assert.Equal(t, fmt.Sprintf("racer-%d", winner), after.audit[len(after.audit)-1].Who)
		assert.Equal(t, before.m.Revision+1, after.m.Revision)
	}
}
