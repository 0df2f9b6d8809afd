package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
)

var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

// TestColorIsDecidedByTheWriterAndTheEnvironment: colour only on a terminal, never with
// NO_COLOR (any non-empty value) or --no-color, and forced with CLICOLOR_FORCE, which NO_COLOR
// and --no-color still beat.
func TestColorIsDecidedByTheWriterAndTheEnvironment(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	require.NoError(t, err)
	defer file.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer devNull.Close()
	tests := []struct {
		name           string
		noColor, force string
		flag           bool
		w              any
		want           bool
	}{
		{name: "a buffer", w: &bytes.Buffer{}},
		{name: "a file", w: file},
		{name: "/dev/null, a character device but no terminal", w: devNull},
		{name: "forced", force: "1", w: &bytes.Buffer{}, want: true},
		{name: "forced off", force: "0", w: &bytes.Buffer{}},
		{name: "forced, but NO_COLOR", force: "1", noColor: "1", w: &bytes.Buffer{}},
		{name: "forced, but NO_COLOR=false (any value counts)", force: "1", noColor: "false", w: &bytes.Buffer{}},
		{name: "forced, but --no-color", force: "1", flag: true, w: &bytes.Buffer{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(envNoColor, tt.noColor)
			t.Setenv(envColorForce, tt.force)
			w := tt.w.(interface{ Write([]byte) (int, error) })
			assert.Equal(t, tt.want, useColor(w, tt.flag))
		})
	}
}

// TestColorKeepsTablesAligned: a painted table, its escapes removed, is the plain one, byte
// for byte: every cell of a painted column carries escapes of the same length.
func TestColorKeepsTablesAligned(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 10, 0, time.UTC)
	p := backfill.Progress{
		Migration: "users-v2", State: backfill.StatePaused, Partitions: 4, StartedAt: now,
		Runners: []catalog.BackfillRunner{
			{Owner: "host-a:41", State: "copying", UpdatedAt: now},
			{Owner: "host-b:7", State: "throttled", UpdatedAt: now},
			{Owner: "host-c:1", State: "starting", UpdatedAt: now},
		},
	}
	var plain, painted strings.Builder
	printProgress(&plain, palette{}, p, now)
	printProgress(&painted, palette{on: true}, p, now)
	assert.NotContains(t, plain.String(), "\x1b")
	assert.Contains(t, painted.String(), "backfill of users-v2: \x1b[33mpaused\x1b[0m")
	assert.Contains(t, painted.String(), "\x1b[32mcopying\x1b[0m")
	assert.Contains(t, painted.String(), "\x1b[33mthrottled\x1b[0m")
	assert.Equal(t, plain.String(), ansiRE.ReplaceAllString(painted.String(), ""))

	gateResults := []flags.GateResult{
		{Gate: "verification", OK: false, Detail: "no verification report"},
		{Gate: "change_lag", OK: true, Detail: "max change lag 0s"},
		{Gate: "reverse_path", OK: true, Detail: "0 reverse dead letters"},
	}
	var gates, paintedGates strings.Builder
	printGates(&gates, palette{}, gateResults)
	printGates(&paintedGates, palette{on: true}, gateResults)
	assert.Equal(t, gates.String(), ansiRE.ReplaceAllString(paintedGates.String(), ""))
	assert.Contains(t, paintedGates.String(), "\x1b[31mFAILED\x1b[0m")
	assert.Contains(t, paintedGates.String(), "\x1b[32mok\x1b[0m")
}

// TestCutoverGatesInColour: the gates' results are coloured when colour is forced, and no
// escape code is printed with NO_COLOR, with --no-color, on a writer that is not a terminal,
// nor ever in JSON.
func TestCutoverGatesInColour(t *testing.T) {
	t.Setenv(envNoColor, "") // whatever the test's environment says
	startAdminAPI(t)
	m := adminTestMigration
	for _, to := range []string{"shadow", "dual"} {
		out, _, err := tandemCLI(t, "phase", m, to, "--reason", "r")
		require.NoError(t, err, out)
	}
	cutover := func(t *testing.T, args ...string) string {
		t.Helper()
		stdout, stderr, status := tandemSplit(t, append([]string{"cutover", m}, args...)...)
		require.Equal(t, exitFailed, status, "no verification: refused\n%s%s", stdout, stderr)
		assert.NotContains(t, stderr, "\x1b", "the error line is never coloured")
		return stdout
	}
	t.Run("not a terminal", func(t *testing.T) {
		t.Setenv(envColorForce, "")
		out := cutover(t)
		assert.Regexp(t, `gate verification\s+FAILED`, out)
		assert.NotContains(t, out, "\x1b")
	})
	t.Run("forced", func(t *testing.T) {
		t.Setenv(envColorForce, "1")
		out := cutover(t)
		assert.Regexp(t, "gate verification\\s+\x1b\\[31mFAILED\x1b\\[0m", out)
		assert.Regexp(t, "gate reverse_path\\s+\x1b\\[32mok\x1b\\[0m", out)
	})
	t.Run("forced, NO_COLOR", func(t *testing.T) {
		t.Setenv(envColorForce, "1")
		t.Setenv(envNoColor, "1")
		assert.NotContains(t, cutover(t), "\x1b")
	})
	t.Run("forced, --no-color", func(t *testing.T) {
		t.Setenv(envColorForce, "1")
		out := cutover(t, "--no-color")
		assert.NotContains(t, out, "\x1b")
		assert.Regexp(t, `gate verification\s+FAILED`, out)
	})
	t.Run("forced, JSON", func(t *testing.T) {
		t.Setenv(envColorForce, "1")
		assert.NotContains(t, cutover(t, "--output", "json"), "\x1b")
	})
}
