package main

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
)

// exitCase is how one command is checked against the README's exit-status table.
type exitCase struct {
	// ok is a command line that passes every check of the command line, before a store or the
	// admin API is reached; nil for a command that would start serving (proxy, demo, run).
	ok []string
	// wrongArgs has the wrong number of arguments; nil where any number is right.
	wrongArgs []string
	// output says the command prints a result and has --output.
	output bool
	// admin says the command calls the admin API at --admin.
	admin bool
	// unreachable is appended to ok to point the command at a store nothing answers on.
	unreachable []string
}

const exampleSpec = "../../examples/users-v2.yaml"

// nowhere is a MongoDB nothing answers on, reached within a second.
var nowhere = []string{"--source-uri", "mongodb://127.0.0.1:1/", "--target-uri", "mongodb://127.0.0.1:1/", "--connect-timeout", "1s"}

// exitCases has a case for every command; TestEveryCommandFollowsTheExitStatusTable fails
// for a command without one.
var exitCases = map[string]exitCase{
	"":      {wrongArgs: []string{"frob"}},
	"proxy": {wrongArgs: []string{"proxy", "extra"}},
	"demo":  {wrongArgs: []string{"demo", "extra"}},
	"run":   {wrongArgs: []string{"run", "extra"}},
	"validate": {ok: []string{"validate", exampleSpec, "--sample", "1"}, wrongArgs: []string{"validate"}, output: true,
		unreachable: nowhere},
	"flags":     {ok: []string{"flags", "get", "m"}, wrongArgs: []string{"flags", "frob"}},
	"flags get": {ok: []string{"flags", "get", "m"}, wrongArgs: []string{"flags", "get"}, output: true, admin: true},
	"flags set": {ok: []string{"flags", "set", "m", "read_source=old", "--reason", "r"}, wrongArgs: []string{"flags", "set", "m"},
		output: true, admin: true},
	"phase":   {ok: []string{"phase", "m", "shadow", "--reason", "r"}, wrongArgs: []string{"phase", "m"}, output: true, admin: true},
	"cutover": {ok: []string{"cutover", "m"}, wrongArgs: []string{"cutover", "m", "dual"}, output: true, admin: true},
	"rollback": {ok: []string{"rollback", "m", "--reason", "r"}, wrongArgs: []string{"rollback", "--reason", "r"},
		output: true, admin: true},
	"history": {ok: []string{"history", "m"}, wrongArgs: []string{"history"}, output: true, admin: true},
	"status":  {ok: []string{"status", "m"}, wrongArgs: []string{"status", "m", "n"}, output: true, admin: true},
	"verify":  {ok: []string{"verify", "m"}, wrongArgs: []string{"verify", "m", "n"}, output: true, admin: true},
	"report":  {ok: []string{"report", "m"}, wrongArgs: []string{"report"}, output: true, admin: true},
	"report sign": {ok: []string{"report", "sign", "m", "--by", "b", "--comment", "c"}, wrongArgs: []string{"report", "sign", "--by", "b", "--comment", "c"},
		output: true, admin: true},
	"backfill": {ok: []string{"backfill", "status", "m"}, wrongArgs: []string{"backfill", "frob"}},
	"backfill run": {ok: []string{"backfill", "run", exampleSpec}, wrongArgs: []string{"backfill", "run"}, output: true,
		unreachable: nowhere},
	"backfill pause":  {ok: []string{"backfill", "pause", "m", "--reason", "r"}, wrongArgs: []string{"backfill", "pause", "--reason", "r"}, output: true, admin: true},
	"backfill resume": {ok: []string{"backfill", "resume", "m", "--reason", "r"}, wrongArgs: []string{"backfill", "resume", "m", "n", "--reason", "r"}, output: true, admin: true},
	"backfill rate":   {ok: []string{"backfill", "rate", "m", "--docs", "10", "--reason", "r"}, wrongArgs: []string{"backfill", "rate", "--docs", "10", "--reason", "r"}, output: true, admin: true},
	"backfill status": {ok: []string{"backfill", "status", "m"}, wrongArgs: []string{"backfill", "status"}, output: true, admin: true},
	"cdc":             {ok: []string{"cdc", "status", "m", "--catalog", "mongodb://127.0.0.1:1/"}, wrongArgs: []string{"cdc", "frob"}},
	"cdc status": {ok: []string{"cdc", "status", "m"}, wrongArgs: []string{"cdc", "status"}, output: true,
		unreachable: []string{"--catalog", "mongodb://127.0.0.1:1/", "--connect-timeout", "1s"}},
	"cdc resync": {ok: []string{"cdc", "resync", exampleSpec, "--direction", "forward", "--reason", "r"}, wrongArgs: []string{"cdc", "resync", "--direction", "forward", "--reason", "r"},
		output: true, unreachable: nowhere},
	"dead-letters":          {ok: []string{"dead-letters", "list", "m"}, wrongArgs: []string{"dead-letters", "frob"}},
	"dead-letters list":     {ok: []string{"dead-letters", "list", "m"}, wrongArgs: []string{"dead-letters", "list"}, output: true, admin: true},
	"dead-letters retry":    {ok: []string{"dead-letters", "retry", "m", "--reason", "r"}, wrongArgs: []string{"dead-letters", "retry", "--reason", "r"}, output: true, admin: true},
	"completion":            {ok: []string{"completion", "bash"}, wrongArgs: []string{"completion", "tcsh"}},
	"completion bash":       {ok: []string{"completion", "bash"}, wrongArgs: []string{"completion", "bash", "extra"}},
	"completion zsh":        {ok: []string{"completion", "zsh"}, wrongArgs: []string{"completion", "zsh", "extra"}},
	"completion fish":       {ok: []string{"completion", "fish"}, wrongArgs: []string{"completion", "fish", "extra"}},
	"completion powershell": {ok: []string{"completion", "powershell"}, wrongArgs: []string{"completion", "powershell", "extra"}},
	"help":                  {ok: []string{"help", "flags", "get"}, wrongArgs: []string{"help", "frob"}},
}

// runInProcess runs args as main does and returns the exit status and what was printed.
func runInProcess(t *testing.T, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errOut syncBuffer
	status = run(context.Background(), args, &out, &errOut)
	return status, out.String(), errOut.String()
}

// assertOneErrorLine checks that a failed command printed its error as one line on stderr,
// starting with "tandem:", and nothing else there.
func assertOneErrorLine(t *testing.T, stderr string, args []string) {
	t.Helper()
	assert.True(t, strings.HasPrefix(stderr, "tandem: "), "%v: the error starts with tandem: %q", args, stderr)
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "%v: the error is one line: %q", args, stderr)
}

// TestEveryCommandFollowsTheExitStatusTable walks the whole command tree, so that a new
// command without a case fails here, and checks each against the README's table: an unknown
// flag, a wrong number of arguments and a bad --output exit 2; an unreachable admin API or
// store exits 1; each with one error line on stderr starting with "tandem:".
func TestEveryCommandFollowsTheExitStatusTable(t *testing.T) {
	t.Setenv(envAdminURL, "")
	t.Setenv(envAdminToken, "a-token") // past the CLI's own check, so that the API is called
	root := newRootCmd(&syncBuffer{}, &syncBuffer{})
	var commands []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		commands = append(commands, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	assert.Greater(t, len(commands), 25)
	for _, c := range commands {
		path := strings.TrimPrefix(strings.TrimPrefix(c.CommandPath(), "tandem"), " ")
		t.Run("tandem "+path, func(t *testing.T) {
			tc, ok := exitCases[path]
			if !ok {
				t.Fatalf("no exit-status case for %q: add one to exitCases", c.CommandPath())
			}
			base := strings.Fields(path)
			if path == "help" {
				base = []string{"help"}
			}
			check := func(want int, args ...string) (string, string) {
				t.Helper()
				status, stdout, stderr := runInProcess(t, args...)
				assert.Equal(t, want, status, "%v\nstdout: %s\nstderr: %s", args, stdout, stderr)
				if want != exitOK {
					assertOneErrorLine(t, stderr, args)
				}
				return stdout, stderr
			}

			_, stderr := check(exitUsage, append(append([]string{}, base...), "--no-such-flag")...)
			assert.Contains(t, stderr, "unknown flag: --no-such-flag")
			if tc.wrongArgs != nil {
				check(exitUsage, tc.wrongArgs...)
			}

			assert.Equal(t, tc.output, c.Flags().Lookup("output") != nil, "whether %q has --output", path)
			if tc.output {
				_, stderr := check(exitUsage, append(append([]string{}, tc.ok...), "--output", "xml")...)
				assert.Contains(t, stderr, `invalid argument "xml" for "--output" flag: want table or json`)
			} else {
				check(exitUsage, append(append([]string{}, base...), "--output", "json")...)
			}

			if tc.admin {
				_, stderr := check(exitFailed, append(append([]string{}, tc.ok...), "--admin", "http://127.0.0.1:1")...)
				assert.Contains(t, stderr, "calling the admin API")
			}
			if tc.unreachable != nil {
				_, stderr := check(exitFailed, append(append([]string{}, tc.ok...), tc.unreachable...)...)
				assert.Contains(t, stderr, "127.0.0.1:1")
			}
		})
	}
}

// TestTheREADMEsExitStatusExamples: the usage errors the README's table names that are not
// a flag or a count of arguments.
func TestTheREADMEsExitStatusExamples(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want int
		msg  string
	}{
		{[]string{"frob"}, exitUsage, `unknown command "frob" for "tandem"`},
		{[]string{"flags", "frob"}, exitUsage, "unknown subcommand"},
		{[]string{"backfill"}, exitUsage, "backfill needs a subcommand"},
		{[]string{"completion"}, exitUsage, "completion needs a shell"},
		{[]string{"help", "backfill", "frob"}, exitUsage, `unknown command "frob" for "tandem backfill"`},
		{[]string{"validate", "/nonexistent/spec.yaml"}, exitUsage, "spec /nonexistent/spec.yaml: no such file or directory"},
		{[]string{"backfill", "run", "/nonexistent/spec.yaml"}, exitUsage, "no such file or directory"},
		{[]string{"history", "m", "--limit", "many"}, exitUsage, `invalid argument "many" for "--limit" flag`},
		{[]string{"flags", "get", "m", "--token-file", "/nonexistent/token"}, exitUsage, "--token-file"},
	} {
		status, _, stderr := runInProcess(t, tt.args...)
		assert.Equal(t, tt.want, status, "%v: %s", tt.args, stderr)
		assert.Contains(t, stderr, tt.msg, tt.args)
		assertOneErrorLine(t, stderr, tt.args)
	}
	status, stdout, stderr := runInProcess(t, "help", "flags", "get")
	assert.Equal(t, exitOK, status, stderr)
	assert.Contains(t, stdout, "tandem flags get MIGRATION")
}
