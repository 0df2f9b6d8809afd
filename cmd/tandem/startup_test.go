package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/embedmongo"
)

// runMain runs the tandem binary's main (this test binary, re-executed) with args and returns
// its exit status and output. It fails the test if tandem runs longer than 3 minutes.
func runMain(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runMainWithin(t, 3*time.Minute, env, args...)
}

// runMainWithin is runMain with another bound, for runs that do real work on a loaded machine.
func runMainWithin(t *testing.T, bound time.Duration, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	j, err := json.Marshal(args)
	require.NoError(t, err)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "TANDEM_RUN_MAIN=1", "TANDEM_ARGS_JSON="+string(j)), env...)
	cmd.Dir = t.TempDir()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	require.NoError(t, ctx.Err(), "tandem %v did not exit within %s\n%s", args, bound, errOut.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String(), errOut.String()
	}
	require.NoError(t, err)
	return 0, out.String(), errOut.String()
}

// lastLine is the line main prints for an error: the last line of stderr.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// busyPort holds a loopback port open for the test and returns its address.
func busyPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestStartUpFailuresAreOneLine runs every start-up failure of the commands that load a spec
// (proxy, demo, validate) as a process: each must exit with its status and print one line
// that names what failed, never a panic or the driver's topology description, and never a
// password.
func TestStartUpFailuresAreOneLine(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	spec, err := filepath.Abs("../../examples/users-v2.yaml")
	require.NoError(t, err)
	dir := t.TempDir()
	badSpec := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(badSpec, []byte("name: bad\nsource: {}\n"), 0o600))
	aFile := filepath.Join(dir, "a-file")
	require.NoError(t, os.WriteFile(aFile, nil, 0o600))
	busy := busyPort(t)
	const secret = "s3cr3t-pw"

	// A proxy that takes part in the example migration on the embedded store, but for the
	// flags a case adds.
	proxy := func(extra ...string) []string {
		return append([]string{"proxy", "--upstream", store.URI(), "--spec", spec, "--journal-embedded",
			"--listen", "127.0.0.1:0", "--admin", "", "--connect-timeout", "1s"}, extra...)
	}
	demo := func(extra ...string) []string {
		return append([]string{"demo", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--store-listen", "127.0.0.1:0",
			"--admin", "127.0.0.1:0", "--connect-timeout", "1s"}, extra...)
	}
	tests := []struct {
		name string
		args []string
		code int
		want []string // in the error line
	}{
		{"proxy: catalog URI malformed", proxy("--catalog", "mongodb://h:port/"), exitUsage,
			[]string{"--catalog", "not a valid connection string"}},
		{"proxy: catalog unreachable", proxy("--catalog", "mongodb://127.0.0.1:1/"), exitFailed,
			[]string{"--catalog", "mongodb://127.0.0.1:1/", "not reachable within 1s", "connection refused"}},
		{"proxy: catalog (the upstream) unreachable, with a password", []string{"proxy", "--upstream", "mongodb://app:" + secret + "@127.0.0.1:1/",
			"--spec", spec, "--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "", "--connect-timeout", "1s"}, exitFailed,
			[]string{"catalog", "default --upstream", "127.0.0.1:1", "not reachable within 1s"}},
		{"proxy: upstream URI malformed", []string{"proxy", "--upstream", "mongodb://", "--listen", "127.0.0.1:0", "--admin", ""}, exitUsage,
			[]string{"upstream", "mongodb://"}},
		{"proxy: spec file missing", proxy("--spec", filepath.Join(dir, "none.yaml")), exitUsage,
			[]string{"--spec", "none.yaml", "no such file"}},
		{"proxy: spec invalid", proxy("--spec", badSpec), exitUsage,
			[]string{"--spec", "bad.yaml:2:"}},
		{"proxy: target unreachable", proxy("--target-uri", "mongodb://127.0.0.1:1/"), exitFailed,
			[]string{"target mongodb demo.users_v2", "mongodb://127.0.0.1:1/", "not reachable within 1s"}},
		{"proxy: target URI of the wrong kind", proxy("--target-uri", "http://127.0.0.1:1/"), exitUsage,
			[]string{"--target-uri", "want a mongodb://"}},
		{"proxy: Kafka unreachable", append(proxy("--kafka-brokers", "127.0.0.1:1"), "--journal-embedded=false"), exitFailed,
			[]string{"--kafka-brokers 127.0.0.1:1", "creating topic tandem.journal", "connection refused"}},
		{"proxy: listen address in use", proxy("--listen", busy), exitFailed,
			[]string{"--listen " + busy, "address already in use"}},
		{"proxy: admin address in use", proxy("--admin", busy), exitFailed,
			[]string{"--admin " + busy, "address already in use"}},
		{"proxy: token file missing", proxy("--admin-token-file", filepath.Join(dir, "none")), exitUsage,
			[]string{"--admin-token-file", "no such file"}},
		{"demo: data is a file", demo("--data", aFile), exitUsage,
			[]string{"--data", "is a file"}},
		{"demo: store address in use", demo("--store-listen", busy), exitFailed,
			[]string{"--store-listen " + busy, "address already in use"}},
		{"demo: listen address in use", demo("--listen", busy), exitFailed,
			[]string{"--listen " + busy, "address already in use"}},
		{"demo: target unreachable", demo("--target-uri", "mongodb://127.0.0.1:1/"), exitFailed,
			[]string{"target mongodb demo.users_v2", "not reachable within 1s"}},
		{"validate: spec file missing", []string{"validate", filepath.Join(dir, "none.yaml")}, exitUsage,
			[]string{"none.yaml", "no such file"}},
		{"validate: source unreachable", []string{"validate", spec, "--sample", "5", "--connect-timeout", "1s",
			"--source-uri", "mongodb://reader:" + secret + "@127.0.0.1:1/"}, exitFailed,
			[]string{"source mongodb demo.users", "127.0.0.1:1", "not reachable within 1s"}},
		{"validate: target unreachable", []string{"validate", spec, "--sample", "5", "--connect-timeout", "1s",
			"--source-uri", store.URI(), "--target-uri", "mongodb://127.0.0.1:1/"}, exitFailed,
			[]string{"target mongodb demo.users_v2", "not reachable within 1s"}},
		{"validate: source URI of the wrong kind", []string{"validate", spec, "--source-uri", "postgres://x/"}, exitUsage,
			[]string{"--source-uri", "want a mongodb://"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(t, nil, tt.args...)
			line := lastLine(stderr)
			assert.Equal(t, tt.code, code, "exit status; stderr:\n%s", stderr)
			assert.True(t, strings.HasPrefix(line, "tandem: "), "the last line is tandem's error: %q", line)
			for _, w := range tt.want {
				assert.Contains(t, line, w)
			}
			assert.NotContains(t, stderr, "panic")
			assert.NotContains(t, stderr, "goroutine ")
			assert.NotContains(t, stderr, "current topology")
			assert.NotContains(t, stderr, secret)
		})
	}
}

// TestExitCodes checks the README's table of exit statuses on the real binary.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, exitOK},
		{[]string{}, exitOK}, // the help
		{[]string{"--version"}, exitOK},
		{[]string{"validate", "../../examples/users-v2.yaml"}, exitOK},
		{[]string{"nosuch"}, exitUsage},
		{[]string{"proxyy"}, exitUsage},
		{[]string{"validate"}, exitUsage},
		{[]string{"validate", "a.yaml", "b.yaml"}, exitUsage},
		{[]string{"flags"}, exitUsage},
		{[]string{"flags", "nosuch"}, exitUsage},
		{[]string{"flags", "get"}, exitUsage},
		{[]string{"phase", "m"}, exitUsage},
		{[]string{"history", "a", "b"}, exitUsage},
		{[]string{"proxy", "extra"}, exitUsage},
		{[]string{"demo", "extra"}, exitUsage},
		{[]string{"proxy", "--no-such-flag"}, exitUsage},
		{[]string{"rollback", "m"}, exitUsage}, // no --reason
		// Refused or failed operations.
		{[]string{"flags", "get", "m", "--admin", "http://127.0.0.1:1", "--timeout", "2s"}, exitFailed},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			dir, err := filepath.Abs(".")
			require.NoError(t, err)
			args := tt.args
			for i, a := range args {
				if strings.HasPrefix(a, "../") {
					args[i] = filepath.Join(dir, a)
				}
			}
			code, stdout, stderr := runMain(t, nil, args...)
			assert.Equal(t, tt.code, code, "stdout:\n%s\nstderr:\n%s", stdout, stderr)
			if code == exitUsage {
				assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			}
		})
	}
}

// TestEveryCommandChecksItsArguments walks the command tree: every command declares its
// positional arguments, so none accepts stray words silently.
func TestEveryCommandChecksItsArguments(t *testing.T) {
	root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		assert.NotNil(t, c.Args, "tandem %s declares its arguments", c.Name())
		for _, sub := range c.Commands() {
			assert.NotNil(t, sub.Args, "tandem %s %s declares its arguments", c.Name(), sub.Name())
		}
	}
}
