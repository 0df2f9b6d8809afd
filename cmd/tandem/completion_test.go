package main

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// complete runs the shell's request for the candidates of args (its last one the word being
// completed) through cobra's hidden __complete command, in-process, as the scripts of
// "tandem completion" do; it returns the candidates without their descriptions, and the
// directive.
func complete(t *testing.T, args ...string) ([]string, cobra.ShellCompDirective) {
	t.Helper()
	var out, errOut syncBuffer
	root := newRootCmd(&out, &errOut)
	root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
	require.NoError(t, root.ExecuteContext(context.Background()))
	assert.NotContains(t, errOut.String(), "tandem:", "completion prints no error")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.NotEmpty(t, lines)
	last := lines[len(lines)-1]
	require.True(t, strings.HasPrefix(last, ":"), "the directive ends the output: %q", out.String())
	var d int
	for _, c := range last[1:] {
		d = d*10 + int(c-'0')
	}
	var cands []string
	for _, l := range lines[:len(lines)-1] {
		name, _, _ := strings.Cut(l, "\t")
		cands = append(cands, name)
	}
	return cands, cobra.ShellCompDirective(d)
}

// TestCompletionScripts: "tandem completion SHELL" prints a script for each shell cobra
// supports; each names tandem.
func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash":       "__start_tandem",
		"zsh":        "#compdef tandem",
		"fish":       "complete -c tandem",
		"powershell": "Register-ArgumentCompleter",
	} {
		t.Run(shell, func(t *testing.T) {
			status, stdout, stderr := runInProcess(t, "completion", shell)
			require.Equal(t, exitOK, status, stderr)
			assert.Contains(t, stdout, marker)
			assert.Contains(t, stdout, "tandem")
			assert.Greater(t, len(stdout), 1000)
		})
	}
}

// TestCompletionWithoutTheAdminAPI: phases, flag names and values, and the values of --output,
// --direction, --to, --format and the log flags complete without asking anything; SPEC
// arguments complete with YAML files.
func TestCompletionWithoutTheAdminAPI(t *testing.T) {
	t.Setenv(envAdminURL, "http://127.0.0.1:1")
	noFiles := cobra.ShellCompDirectiveNoFileComp
	for _, tt := range []struct {
		args      []string
		want      []string
		directive cobra.ShellCompDirective
	}{
		{[]string{"phase", "m", ""}, []string{"shadow", "dual", "finalized"}, noFiles},
		{[]string{"phase", "m", "d"}, []string{"dual"}, noFiles},
		{[]string{"phase", "m", "dual", ""}, nil, noFiles},
		{[]string{"flags", "set", "m", ""}, []string{"read_source=", "shadow_read_percent=", "write_block="}, noFiles | cobra.ShellCompDirectiveNoSpace},
		{[]string{"flags", "set", "m", "write_block=true", "r"}, []string{"read_source="}, noFiles | cobra.ShellCompDirectiveNoSpace},
		{[]string{"flags", "set", "m", "read_source="}, []string{"read_source=old", "read_source=new"}, noFiles},
		{[]string{"flags", "set", "m", "shadow_read_percent="}, nil, noFiles},
		{[]string{"history", "m", "--output", ""}, []string{"table", "json"}, noFiles},
		{[]string{"backfill", "run", "s.yaml", "--output", "j"}, []string{"json"}, noFiles},
		{[]string{"cdc", "resync", "s.yaml", "--direction", ""}, []string{"forward", "reverse"}, noFiles},
		{[]string{"rollback", "m", "--to", ""}, []string{"off", "shadow", "dual", "cutover"}, noFiles},
		{[]string{"report", "m", "--format", ""}, []string{"json", "md", "html"}, noFiles},
		{[]string{"--log-level", ""}, []string{"debug", "info", "warn", "error"}, noFiles},
		{[]string{"run", "--cdc", ""}, []string{"auto", "on", "off"}, noFiles},
		{[]string{"validate", ""}, []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt},
		{[]string{"cdc", "resync", ""}, []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt},
		{[]string{"flags", "get", ""}, nil, noFiles},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, d := complete(t, tt.args...)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.directive, d)
		})
	}
	got, _ := complete(t, "")
	for _, c := range []string{"completion", "flags", "phase", "cutover", "backfill", "cdc", "report"} {
		assert.Contains(t, got, c, "command names complete")
	}
}

// TestCompletionOfMigrationsFromTheAdminAPI: MIGRATION arguments complete with the names
// GET /v1/migrations lists, and the PHASE of "tandem phase" and --to of "tandem rollback"
// with the moves the migration's phase allows.
func TestCompletionOfMigrationsFromTheAdminAPI(t *testing.T) {
	startAdminAPI(t)
	m := adminTestMigration
	for _, args := range [][]string{
		{"flags", "get", ""}, {"flags", "set", ""}, {"phase", ""}, {"cutover", "u"}, {"rollback", ""},
		{"history", ""}, {"verify", ""}, {"report", "users"}, {"report", "sign", ""},
		{"backfill", "pause", ""}, {"backfill", "resume", ""}, {"backfill", "rate", ""}, {"backfill", "status", ""},
		{"status", ""},
	} {
		got, d := complete(t, args...)
		assert.Contains(t, got, m, args)
		assert.Equal(t, cobra.ShellCompDirectiveNoFileComp, d, args)
	}
	got, _ := complete(t, "flags", "get", "x")
	assert.Empty(t, got, "the word typed so far filters the names")

	got, _ = complete(t, "phase", m, "")
	assert.Equal(t, []string{"shadow"}, got, "from off, the next phase")
	out, _, err := tandemCLI(t, "phase", m, "shadow", "--reason", "r")
	require.NoError(t, err, out)
	got, _ = complete(t, "phase", m, "")
	assert.Equal(t, []string{"dual"}, got)
	got, _ = complete(t, "rollback", m, "--to", "")
	assert.Equal(t, []string{"off"}, got, "back from shadow: off only")
}

// TestCompletionFailsQuietly: when the admin API cannot be reached, does not answer in time,
// or refuses the token, MIGRATION completes with nothing, no file names, and no error, within
// the completion timeout.
func TestCompletionFailsQuietly(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = silent.Close() })
	go func() { // accepts, reads nothing, answers nothing
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	a := startAdminAPI(t)
	for name, args := range map[string][]string{
		"unreachable":   {"flags", "get", "--admin", "http://127.0.0.1:1", ""},
		"silent":        {"flags", "get", "--admin", "http://" + silent.Addr().String(), ""},
		"refused token": {"history", "--admin", a.url, "--token-file", writeTemp(t, "wrong-token"), ""},
		"bad --admin":   {"history", "--admin", "ftp://x", ""},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			got, d := complete(t, args...)
			assert.Empty(t, got)
			assert.Equal(t, cobra.ShellCompDirectiveNoFileComp, d)
			assert.Less(t, time.Since(start), completionTimeout+time.Second)
		})
	}
	got, _ := complete(t, "phase", "--admin", "http://"+silent.Addr().String(), adminTestMigration, "")
	assert.Equal(t, []string{"shadow", "dual", "finalized"}, got, "phases complete without the API")
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "token")
	require.NoError(t, err)
	_, err = f.WriteString(content)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	return f.Name()
}
