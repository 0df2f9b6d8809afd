package verify_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/verify"
)

// plant seeds n converged users and breaks some: every 50th from 7 differs in the new store,
// every 50th from 19 is missing there, every 50th from 33 cannot be transformed (its old
// document's age is text), and n/50 users exist only in the new store. It returns the
// broken keys (KeyString) with their kind.
func (f *fixture) plant(t *testing.T, n int) map[string]catalog.MismatchKind {
	t.Helper()
	ctx := context.Background()
	f.seed(t, n)
	want := map[string]catalog.MismatchKind{}
	var olds, news []adapters.WriteOp
	for i := range n {
		switch i % 50 {
		case 7:
			wrong := setField(f.forward(t, user(i)), "schema_version", int32(1))
			news = append(news, adapters.WriteOp{Key: userID(i), Doc: wrong})
			want[adapters.KeyString(userID(i))] = catalog.KindDiffering
		case 19:
			news = append(news, adapters.WriteOp{Key: userID(i)})
			want[adapters.KeyString(userID(i))] = catalog.KindMissing
		case 33:
			olds = append(olds, adapters.WriteOp{Key: userID(i), Doc: setField(user(i), "age", "old")})
			want[adapters.KeyString(userID(i))] = catalog.KindUntransformable
		}
	}
	for j := range max(1, n/50) {
		i := 900000 + j
		news = append(news, adapters.WriteOp{Key: userID(i), Doc: f.forward(t, user(i))})
		want[adapters.KeyString(userID(i))] = catalog.KindExtra
	}
	require.NoError(t, f.old.BulkWrite(ctx, olds))
	require.NoError(t, f.new.BulkWrite(ctx, news))
	return want
}

// found returns every verification mismatch record of the migration's newest run, by key,
// failing on a key recorded twice.
func (f *fixture) found(t *testing.T) map[string]catalog.VerifyMismatch {
	t.Helper()
	all, err := f.cat.VerifyMismatches(context.Background(), migration, catalog.VerifyMismatchQuery{
		States: []string{catalog.MismatchPending, catalog.MismatchConfirmed, catalog.MismatchResolved}, Limit: 100000,
	})
	require.NoError(t, err)
	out := map[string]catalog.VerifyMismatch{}
	for _, m := range all {
		_, dup := out[m.KeyString]
		require.False(t, dup, "key %s recorded twice", m.KeyString)
		out[m.KeyString] = m
	}
	return out
}

// assertFoundExactly checks that the newest run found exactly the planted mismatches, each
// confirmed with its kind, nothing pending and nothing else; and that the legacy mismatch
// list names no key twice.
func (f *fixture) assertFoundExactly(t *testing.T, want map[string]catalog.MismatchKind) {
	t.Helper()
	got := f.found(t)
	var extra, wrong []string
	for k, m := range got {
		switch w, ok := want[k]; {
		case !ok:
			extra = append(extra, fmt.Sprintf("%s (%s, %s: %s)", k, m.Kind, m.State, m.Detail))
		case m.Kind != w || m.State != catalog.MismatchConfirmed:
			wrong = append(wrong, fmt.Sprintf("%s: %s %s, want %s confirmed", k, m.Kind, m.State, w))
		}
	}
	var lost []string
	for k := range want {
		if _, ok := got[k]; !ok {
			lost = append(lost, k)
		}
	}
	sort.Strings(extra)
	sort.Strings(lost)
	assert.Empty(t, extra, "false mismatches")
	assert.Empty(t, lost, "planted mismatches not found")
	assert.Empty(t, wrong, "mismatches of the wrong kind or state")
	for ks := range f.legacyOnce(t) {
		assert.Contains(t, want, ks)
	}
}

// legacyOnce returns the keys of the legacy mismatch list (catalog.Mismatches), failing on a
// key listed twice.
func (f *fixture) legacyOnce(t *testing.T) map[string]bool {
	t.Helper()
	legacy, err := f.cat.Mismatches(context.Background(), migration, 0)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, m := range legacy {
		ks := adapters.KeyString(m.Key)
		assert.False(t, seen[ks], "legacy mismatch of %s recorded twice", ks)
		seen[ks] = true
	}
	return seen
}

// assertReferenceFinds runs one uninterrupted comparison of f's stores, by look-ups, in a
// fresh catalog, and checks that it finds exactly want.
func (f *fixture) assertReferenceFinds(t *testing.T, want map[string]catalog.MismatchKind) {
	t.Helper()
	ref := newFixture(t)
	ref.old, ref.new = f.old, f.new
	cfg := ref.config()
	cfg.Plan = verify.PlanLookup
	sum, err := verify.Run(context.Background(), cfg)
	require.NoError(t, err)
	refFound := ref.found(t)
	assert.Len(t, refFound, len(want))
	for k, m := range refFound {
		assert.Equal(t, want[k], m.Kind, k)
	}
	assert.Equal(t, int64(len(want)), sum.Mismatches)
}

// verifyProgress is a number that grows whenever the run gets further: keys compared in
// every generation, and generations made.
func verifyProgress(f *fixture) int64 {
	st, err := f.cat.VerifyState(context.Background(), migration)
	if err != nil {
		return -1
	}
	p := int64(len(st.Generations)) * 1_000_000
	for _, g := range st.Generations {
		p += g.Compared + int64(g.TasksDone)
	}
	for _, part := range st.Partitions {
		if part.Store != catalog.StoreJoin { // a join's parts count what they read, then the join what it compared
			p += part.OldDocs + part.NewDocs
		}
	}
	return p
}

// TestSurvivesKills runs the verifier in a child process, SIGKILLs it at random moments
// (inside a batch, between a mismatch's record and the checkpoint, while a generation is
// made, during a recheck) ten times or more, until the run is finished, restarting it each
// time (a restart waits for the dead one's task leases to expire), then lets one finish. The
// run's result must be what one uninterrupted full comparison gives: every planted mismatch
// found exactly once with its kind, and no other. It runs with the default plan (the merge)
// and with the join, whose spill files a kill leaves behind half written; once, the join's
// spill directory is removed between two lives (a restart on a machine that lost it), and
// the next one must scan again.
func TestSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	for _, plan := range []string{verify.PlanAuto, verify.PlanJoin} {
		name := plan
		if name == "" {
			name = "merge"
		}
		t.Run(name, func(t *testing.T) { testSurvivesKills(t, plan) })
	}
}

func testSurvivesKills(t *testing.T, plan string) {
	spill := t.TempDir()
	env := []string{"TANDEM_VERIFY_PLAN=" + plan, "TANDEM_VERIFY_SPILL=" + spill}
	f := newFixture(t)
	n := 1000
	if raceEnabled {
		n = 400
	}
	if plan == verify.PlanJoin {
		n /= 2 // its 64 buckets add a dozen lives of their own
	}
	want := f.plant(t, n)
	// Kill until the run is finished (each life gets a little further: the child's rate limit
	// spreads the run over a dozen lives or more), so that kills land in the full pass, in the
	// making of a generation and in the rechecks.
	kills := 0
	for kills < 40 {
		cmd, out, err := f.child("k", env...)
		require.NoError(t, err)
		before := verifyProgress(f)
		for deadline := time.Now().Add(testLease + 30*time.Second); verifyProgress(f) <= before && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(250)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		if err := waitExit(cmd, 10*time.Second); err == nil {
			t.Logf("the child finished before kill %d", kills+1)
			break
		}
		kills++
		if plan == verify.PlanJoin && kills == 5 {
			require.NoError(t, os.RemoveAll(filepath.Join(spill, "tandem-verify")))
			t.Logf("kill %d: the spill directory removed", kills)
		}
		st, err := f.cat.VerifyState(context.Background(), migration)
		if err == nil {
			t.Logf("kill %d: generation %d, %d keys compared in the full pass, %d partitions uncovered", kills, st.Generation, st.Compared, len(st.Uncovered))
			if !st.Finished.IsZero() {
				break
			}
		}
		_ = out
	}
	// The last child finishes the run, unless a killed one did just before its kill (a new
	// child would then start a second run).
	for attempt := 1; ; attempt++ {
		if st, err := f.cat.VerifyState(context.Background(), migration); err == nil && !st.Finished.IsZero() {
			break
		}
		cmd, out, err := f.child("last", env...)
		require.NoError(t, err)
		err = waitExit(cmd, 5*time.Minute)
		if err != nil && attempt < 4 && strings.Contains(out.String(), "database is locked") {
			t.Logf("last run, attempt %d: the test server's SQLite was locked; again", attempt)
			time.Sleep(time.Second)
			continue
		}
		require.NoError(t, err, "last run:\n%s", out.String())
		break
	}
	assert.GreaterOrEqual(t, kills, 10, "kills")

	st, err := f.cat.VerifyState(context.Background(), migration)
	require.NoError(t, err)
	assert.Equal(t, "run-000001", st.RunID, "every restart resumed the one run")
	assert.False(t, st.Finished.IsZero())
	assert.True(t, st.FullPassDone)
	assert.Empty(t, st.Uncovered)
	assert.Equal(t, int64(n+n/50), st.Compared, "every key of both stores compared once in the full pass")
	f.assertFoundExactly(t, want)
	f.assertReferenceFinds(t, want)
}

// TestTwoProcessesShareARun starts two verifier processes on one catalog at once: both work
// on the one run (each claims tasks), both exit when it is finished, and the result is the
// full comparison's.
func TestTwoProcessesShareARun(t *testing.T) {
	f := newFixture(t)
	n := 600
	if raceEnabled {
		n = 250
	}
	want := f.plant(t, n)
	a, aout, err := f.child("a")
	require.NoError(t, err)
	b, bout, err := f.child("b")
	require.NoError(t, err)
	require.NoError(t, waitExit(a, 5*time.Minute), "a:\n%s", aout.String())
	require.NoError(t, waitExit(b, 5*time.Minute), "b:\n%s", bout.String())

	run, err := f.cat.LatestVerifyRun(context.Background(), migration)
	require.NoError(t, err)
	assert.Equal(t, int64(1), run.Seq, "the second process joined the first one's run")
	leases, err := f.cat.VerifyLeases(context.Background(), migration, run.RunID, -1)
	require.NoError(t, err)
	owners := map[string]int{}
	for _, l := range leases {
		owners[l.Owner]++
	}
	t.Logf("tasks by owner: %v", owners)
	assert.Positive(t, owners["child-a"], "a worked on the run")
	assert.Positive(t, owners["child-b"], "b worked on the run")
	f.assertFoundExactly(t, want)
}
