package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/admin/admintest"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
)

// statusQuiet is a second migration with nothing in any section: each says so in one line.
const statusQuiet = "orders-v1"

// statusDocs is the source's documents: a backfill planned over them and not copied, and a
// verification that finds every one missing from the new store.
const statusDocs = 40

// startStatusScene is the admin API over a catalog with something in every section of
// users-v2's overview: phase shadow (an audit entry), a backfill plan of 8 partitions nothing
// copies, a forward change stream 1.5 s behind, a reverse one that lost its history, a forward
// dead letter, and a verification run that confirmed the 40 documents missing. A second
// migration, orders-v1, has nothing.
func startStatusScene(t *testing.T) *adminAPI {
	t.Helper()
	a := startAdminAPI(t)
	ctx := context.Background()
	m := adminTestMigration
	_, err := a.cat.RegisterSpec(ctx, statusQuiet, "v1", "name: "+statusQuiet, "test")
	require.NoError(t, err)
	_, err = a.mgr.Advance(ctx, m, flags.PhaseShadow, "test:ada", "start shadowing")
	require.NoError(t, err)

	admintest.Seed(t, a.client, a.cat, m, "status_scene", statusDocs, 8)
	return a
}

// statusCLI runs tandem in-process with ctx, as main does, and returns the exit status and
// what was printed on stdout and stderr.
func statusCLI(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut syncBuffer
	status := run(ctx, args, &out, &errOut)
	return status, out.String(), errOut.String()
}

// assertFitsTheScreen checks that every line is at most 100 columns.
func assertFitsTheScreen(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		assert.LessOrEqual(t, utf8.RuneCountInString(line), statusWidth, "a line wider than the screen: %q", line)
	}
}

// TestStatusOverAnAdminAPI drives `tandem status` against the real admin handler over a
// catalog with something in every section.
func TestStatusOverAnAdminAPI(t *testing.T) {
	a := startStatusScene(t)
	ctx := context.Background()
	m := adminTestMigration

	t.Run("one screen shows every section", func(t *testing.T) {
		status, out, stderr := statusCLI(ctx, "status", m)
		require.Equal(t, exitOK, status, "%s\n%s", out, stderr)
		t.Logf("the screen:\n%s", out)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		assert.LessOrEqual(t, len(lines), 40, "one screen")
		assertFitsTheScreen(t, out)
		assert.NotContains(t, out, "\x1b[", "no terminal: no colour")

		assert.Regexp(t, `^users-v2 · phase shadow · read_source=old shadow_read_percent=0 write_block=false · rev \d+ · \d\d:\d\d:\d\d$`, lines[0])
		// Problems, worst first, each with its runbook on the line after it.
		assert.Contains(t, out, "needs attention: 3 problem(s)\n")
		assert.Regexp(t, `(?m)^  critical reverse-cdc: reverse change stream lost its history: the oplog no longer holds the resum.*\n\s+runbook docs/runbooks/change-stream-history-lost\.md$`, out)
		assert.Regexp(t, `(?m)^  critical verify: 40 confirmed mismatch\(es\), over the budget of 0\n\s+runbook docs/runbooks/verify-mismatches\.md$`, out)
		assert.Regexp(t, `(?m)^  warning  dead-letters: 1 dead letter\(s\): 1 forward, 0 reverse\n\s+runbook docs/runbooks/dead-letters-growing\.md$`, out)
		assert.Less(t, strings.Index(out, "critical verify"), strings.Index(out, "warning  dead-letters"), "the worst first")
		// The gates.
		assert.Regexp(t, `(?m)^  ✗ verification\s+\S`, out)
		assert.Regexp(t, `(?m)^  ✓ change_lag\s+max change lag`, out)
		assert.Regexp(t, `(?m)^  [✓✗] reverse_path\s+\S`, out)
		// The backfill: nothing copied, 8 partitions waiting, 5 shown.
		assert.Regexp(t, `(?m)^backfill: running · partitions 0/8 done, 0 active · copied 0 of ~40 \(0\.0%\) · 0 docs/s · ETA unknown$`, out)
		assert.Regexp(t, `(?m)^  partition 0\s+waiting\s+0 of ~\d+\s+0 docs/s\s+ETA -\s+-$`, out)
		assert.Equal(t, statusPartitions, strings.Count(out, "  partition "), "at most 5 partition lines")
		assert.Contains(t, out, "  … and 3 more\n")
		// The change streams.
		// The source comes last and may be clipped.
		assert.Regexp(t, `(?m)^  forward\s+running\s+lag 1\.5s\s+42 applied\s+newest \S+ ago\s+mongo change stream`, out)
		assert.Regexp(t, `(?m)^  reverse\s+history_lost\s+lag -\s+0 applied\s+newest -\s+mongo change stream`, out)
		// The verification, its drift and the newest mismatches.
		assert.Regexp(t, `(?m)^verification: not clean · run run-\d+ \(once, generation \d+\) · full pass done$`, out)
		assert.Regexp(t, `(?m)^  compared 40 of ~40 \(100%\) · confirmed 40 \(budget 0\) · pending 0 · backlog \d+$`, out)
		assert.Regexp(t, `(?m)^  drift since \d\d:\d\d [▁▂▃▄▅▆▇█]+ now 40 confirmed, 0 pending$`, out)
		assert.Regexp(t, `(?m)^mismatches: the newest 5 of 40 open:$`, out)
		assert.Regexp(t, `(?m)^  "u\d{3}"\s+missing\s+confirmed\s+missing in the new store`, out)
		assert.Equal(t, statusMismatches, strings.Count(out, "missing in the new store"))
		// The dead letters and the audit.
		assert.Contains(t, out, "dead letters: 1 forward, 0 reverse; the oldest:\n")
		assert.Regexp(t, `(?m)^  "u007"\s+forward\s+forward\[0\] rename\s+\d+ attempt\(s\)\s+since \S+ ago\s+profile is not a document$`, out)
		assert.Contains(t, out, "audit, newest first:\n")
		assert.Regexp(t, `(?m)^  \d\d-\d\d \d\d:\d\d:\d\d\s+test:ada\s+flags phase off → shadow\s+start shadowing$`, out)
	})

	t.Run("empty sections say so in one line", func(t *testing.T) {
		status, out, stderr := statusCLI(ctx, "status", statusQuiet)
		require.Equal(t, exitOK, status, "%s\n%s", out, stderr)
		for _, line := range []string{"needs attention: nothing", "backfill: no plan yet", "change streams: none recorded",
			"verification: no run yet", "dead letters: none"} {
			assert.Contains(t, out, "\n"+line+"\n")
		}
		assert.Contains(t, out, "cutover gates:\n", "the gates are read for any migration")
		assert.Contains(t, out, "orders-v1 · phase off")
		assertFitsTheScreen(t, out)
	})

	t.Run("json is the overview as the client reads it", func(t *testing.T) {
		status, out, stderr := statusCLI(ctx, "status", m, "--output", "json")
		require.Equal(t, exitOK, status, stderr)
		var got admin.Overview
		require.NoError(t, json.Unmarshal([]byte(out), &got), out)
		c, err := admin.NewClient(a.url, adminTestToken, nil)
		require.NoError(t, err)
		want, err := c.Overview(ctx, m)
		require.NoError(t, err)
		assert.WithinDuration(t, want.At, got.At, time.Minute)
		got.At, want.At = time.Time{}, time.Time{}
		assert.Equal(t, want, got, "the API's overview, as it is")
		assert.Len(t, got.Problems, 3)

		status, out, stderr = statusCLI(ctx, "status", "--output", "json")
		require.Equal(t, exitOK, status, stderr)
		var all []admin.Overview
		require.NoError(t, json.Unmarshal([]byte(out), &all), out)
		require.Len(t, all, 2)
		assert.Equal(t, statusQuiet, all[0].Migration, "by name")
		assert.Equal(t, m, all[1].Migration)
		assert.Len(t, all[1].Problems, 3)
	})

	t.Run("without a name every migration one line each", func(t *testing.T) {
		status, out, stderr := statusCLI(ctx, "status")
		require.Equal(t, exitOK, status, "%s\n%s", out, stderr)
		t.Logf("the list:\n%s", out)
		assert.Regexp(t, `^2 migration\(s\) · `, out)
		assert.Regexp(t, `(?m)^MIGRATION\s+PHASE\s+BACKFILL\s+WORST LAG\s+CONFIRMED\s+PROBLEMS$`, out)
		assert.Regexp(t, `(?m)^orders-v1\s+off\s+-\s+-\s+-\s+0$`, out)
		assert.Regexp(t, `(?m)^users-v2\s+shadow\s+running 0%\s+1\.5s\s+40\s+3 \(2 critical\)$`, out)
		assertFitsTheScreen(t, out)
	})

	t.Run("watch prints snapshots until cancelled", func(t *testing.T) {
		for _, tt := range []struct {
			args  []string
			count func(string) int
		}{
			{[]string{"status", m, "--watch", "--interval", "100ms"}, func(s string) int { return strings.Count(s, "(every 100ms, Ctrl-C to stop)\n") }},
			{[]string{"status", "--watch", "--interval", "100ms"}, func(s string) int { return strings.Count(s, "(every 100ms, Ctrl-C to stop)\n") }},
			{[]string{"status", m, "--watch", "--interval", "100ms", "--output", "json"}, func(s string) int { return strings.Count(s, "\n") }},
		} {
			t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
				wctx, cancel := context.WithCancel(ctx)
				defer cancel()
				var out, errOut syncBuffer
				done := make(chan int, 1)
				go func() { done <- run(wctx, tt.args, &out, &errOut) }()
				require.Eventually(t, func() bool { return tt.count(out.String()) >= 2 }, 30*time.Second, 20*time.Millisecond,
					"two snapshots: %s", out.String())
				cancel()
				select {
				case status := <-done:
					assert.Equal(t, exitOK, status, "Ctrl-C ends the watch cleanly: %s", errOut.String())
				case <-time.After(10 * time.Second):
					t.Fatal("the watch did not stop when its context was cancelled")
				}
				assert.Empty(t, errOut.String())
				s := out.String()
				assert.NotContains(t, s, "\x1b[", "no terminal: no redraw, no colour")
				if strings.Contains(tt.args[len(tt.args)-1], "json") {
					lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
					for _, line := range lines {
						var ov admin.Overview
						require.NoError(t, json.Unmarshal([]byte(line), &ov), "each line one JSON document: %q", line)
						assert.Equal(t, m, ov.Migration)
					}
					return
				}
				assert.Contains(t, s, "\n\n", "a blank line between snapshots")
				for _, snap := range strings.Split(s, "\n\n") {
					assertFitsTheScreen(t, snap)
				}
			})
		}
	})

	t.Run("an unknown migration exits 1 with one error line", func(t *testing.T) {
		status, out, stderr := statusCLI(ctx, "status", "nobody")
		assert.Equal(t, exitFailed, status)
		assert.Empty(t, out)
		assertOneErrorLine(t, stderr, []string{"status", "nobody"})
		assert.Contains(t, stderr, admin.CodeNotFound)
		assert.Contains(t, stderr, "nobody")
		status, _, stderr = statusCLI(ctx, "status", "nobody", "--watch", "--interval", "100ms")
		assert.Equal(t, exitFailed, status, "a failed first read fails the watch")
		assertOneErrorLine(t, stderr, []string{"status", "nobody", "--watch"})
	})

	t.Run("colour on demand, never with NO_COLOR or --no-color", func(t *testing.T) {
		t.Setenv(envColorForce, "1")
		status, out, _ := statusCLI(ctx, "status", m)
		require.Equal(t, exitOK, status)
		assert.Contains(t, out, ansiRed+"critical"+ansiReset)
		assert.Contains(t, out, ansiYellow+"warning"+ansiReset)
		assert.Contains(t, out, ansiRed+"✗"+ansiReset)
		assert.Contains(t, out, ansiGreen+"✓"+ansiReset)
		assert.Contains(t, out, ansiRed+"history_lost"+ansiReset)
		assertFitsTheScreen(t, stripANSI(out))
		status, out, _ = statusCLI(ctx, "status")
		require.Equal(t, exitOK, status)
		assert.Contains(t, out, ansiGreen+"running 0%"+ansiReset)

		status, out, _ = statusCLI(ctx, "status", m, "--no-color")
		require.Equal(t, exitOK, status)
		assert.NotContains(t, out, "\x1b[")
		t.Setenv(envNoColor, "1")
		for _, args := range [][]string{{"status", m}, {"status"}} {
			status, out, _ = statusCLI(ctx, args...)
			require.Equal(t, exitOK, status)
			assert.NotContains(t, out, "\x1b[", "%v with NO_COLOR", args)
		}
	})

	t.Run("reads need the token", func(t *testing.T) {
		t.Setenv(envAdminToken, "")
		status, _, stderr := statusCLI(ctx, "status", m)
		assert.Equal(t, exitFailed, status)
		assert.Contains(t, stderr, "this admin API needs the token for reads too")
		status, _, stderr = statusCLI(ctx, "status")
		assert.Equal(t, exitFailed, status, "the listing too")
		assertOneErrorLine(t, stderr, []string{"status"})
	})
}

func TestStatusUsage(t *testing.T) {
	t.Setenv(envAdminURL, "http://127.0.0.1:1") // nothing listens: each case fails before a call
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "a", "b"}, "status takes at most one MIGRATION (got 2 arguments)"},
		{[]string{"status", " "}, "status: argument 1 is empty"},
		{[]string{"status", "m", "--watch", "--interval", "0s"}, "--interval 0s: must be more than 0"},
		{[]string{"status", "--interval", "-1s"}, "--interval -1s: must be more than 0"},
		{[]string{"status", "m", "--output", "yaml"}, "want table or json"},
	} {
		status, _, stderr := statusCLI(context.Background(), tt.args...)
		assert.Equal(t, exitUsage, status, "%v: %s", tt.args, stderr)
		assert.Contains(t, stderr, tt.want, tt.args)
		assertOneErrorLine(t, stderr, tt.args)
	}
}

func TestStatusScreenHelpers(t *testing.T) {
	assert.Equal(t, "abc", clipLine("abc", 3))
	assert.Equal(t, "ab…", clipLine("abcd", 3))
	assert.Equal(t, "✓ é…", clipLine("✓ éèà", 4), "runes, not bytes")
	painted := ansiRed + "abc" + ansiReset + "def"
	assert.Equal(t, painted, clipLine(painted, 6), "escapes take no column")
	assert.Equal(t, ansiRed+"ab…"+ansiReset, clipLine(painted, 3), "a cut in a painted cell resets the colour")
	assert.Equal(t, 5, utf8.RuneCountInString(stripANSI(clipLine(painted, 5))))

	pts := func(vals ...int64) []catalog.VerifyDriftPoint {
		out := make([]catalog.VerifyDriftPoint, len(vals))
		for i, v := range vals {
			out[i] = catalog.VerifyDriftPoint{Confirmed: v}
		}
		return out
	}
	assert.Equal(t, "▁▅█", sparkline(pts(0, 4, 8), 10))
	assert.Equal(t, "▁▁▁", sparkline(pts(0, 0, 0), 10), "no mismatches: flat")
	assert.Equal(t, "▁█", sparkline(pts(0, 0, 8, 1), 2), "each block the highest of its points")
	assert.Equal(t, 48, utf8.RuneCountInString(sparkline(pts(make([]int64, 240)...), 48)))

	for d, want := range map[time.Duration]string{1500 * time.Millisecond: "1.5s", 42 * time.Second: "42s",
		3*time.Hour + 20*time.Minute: "3h20m", 72 * time.Hour: "3d", -time.Second: "0s"} {
		assert.Equal(t, want, shortDuration(d))
	}
}

// stripANSI is s without its colour escapes.
func stripANSI(s string) string {
	var b strings.Builder
	escaped := false
	for _, r := range s {
		switch {
		case r == '\x1b':
			escaped = true
		case escaped:
			escaped = r != 'm'
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
