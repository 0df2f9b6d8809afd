// Package clients_test runs real MongoDB drivers other than Go's — pymongo and the Node.js
// driver — through the proxy, and the same scripts directly against the upstream, so that a
// difference between the two runs shows a proxy bug. `make clients` installs the drivers: pymongo
// in .venv and the Node.js driver in clients/node_modules.
//
// Environment:
//   - TANDEM_PYTHON: the Python interpreter with pymongo; default .venv/bin/python in the
//     repository.
//   - TANDEM_NODE_MODULES: the node_modules folder holding the mongodb package; default
//     clients/node_modules.
//   - TANDEM_REQUIRE_CLIENTS=1: fail instead of skipping when a driver is missing.
package clients_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/testenv"
)

const scriptTimeout = 2 * time.Minute

// clientsDir returns the absolute path of this folder, whatever the working directory.
func clientsDir(t *testing.T) string {
	t.Helper()
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Dir(file)
		if _, err := os.Stat(filepath.Join(dir, "pymongo_smoke.py")); err == nil {
			return dir
		}
	}
	// go test runs in the package folder; this serves when the source path is trimmed.
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pymongo_smoke.py")); err != nil {
		t.Fatalf("cannot find the clients folder (no pymongo_smoke.py in %s)", dir)
	}
	return dir
}

// driver is one client library and how to run its smoke script.
type driver struct {
	name    string
	command func(ctx context.Context, uri string, direct bool) *exec.Cmd
	missing string // why the driver cannot run, "" when it can
}

func pythonDriver(dir string) driver {
	d := driver{name: "pymongo"}
	python := os.Getenv("TANDEM_PYTHON")
	if python == "" {
		python = filepath.Join(filepath.Dir(dir), ".venv", "bin", "python")
		if _, err := os.Stat(python); err != nil {
			d.missing = fmt.Sprintf("pymongo: TANDEM_PYTHON is not set and %s does not exist", python)
			return d
		}
	}
	if out, err := exec.Command(python, "-c", "import pymongo").CombinedOutput(); err != nil {
		d.missing = fmt.Sprintf("pymongo: %s cannot import pymongo: %v %s", python, err, bytes.TrimSpace(out))
		return d
	}
	script := filepath.Join(dir, "pymongo_smoke.py")
	d.command = func(ctx context.Context, uri string, direct bool) *exec.Cmd {
		args := []string{script}
		if direct {
			args = append(args, "--direct")
		}
		cmd := exec.CommandContext(ctx, python, append(args, uri)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1")
		return cmd
	}
	return d
}

func nodeDriver(dir string) driver {
	d := driver{name: "node"}
	node, err := exec.LookPath("node")
	if err != nil {
		d.missing = fmt.Sprintf("node: the node command is not installed: %v", err)
		return d
	}
	modules := os.Getenv("TANDEM_NODE_MODULES")
	if modules == "" {
		modules = filepath.Join(dir, "node_modules")
	}
	if modules, err = filepath.Abs(modules); err != nil {
		d.missing = fmt.Sprintf("node: TANDEM_NODE_MODULES: %v", err)
		return d
	}
	if _, err := os.Stat(filepath.Join(modules, "mongodb", "package.json")); err != nil {
		d.missing = fmt.Sprintf("node: the mongodb package is not installed in %s", modules)
		return d
	}
	script := filepath.Join(dir, "node_smoke.js")
	d.command = func(ctx context.Context, uri string, direct bool) *exec.Cmd {
		args := []string{script}
		if direct {
			args = append(args, "--direct")
		}
		cmd := exec.CommandContext(ctx, node, append(args, uri)...)
		cmd.Dir = dir
		nodePath := modules
		if p := os.Getenv("NODE_PATH"); p != "" {
			nodePath += string(os.PathListSeparator) + p
		}
		cmd.Env = append(os.Environ(), "NODE_PATH="+nodePath)
		return cmd
	}
	return d
}

// requireClients reports whether a missing driver fails the test rather than skipping it.
func requireClients() bool { return os.Getenv("TANDEM_REQUIRE_CLIENTS") == "1" }

func missing(t *testing.T, why string) {
	t.Helper()
	msg := why + "; run `make clients` (it installs pymongo in .venv and the Node.js driver in clients/node_modules)"
	if requireClients() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// env is FerretDB with the proxy in front of it.
type env struct {
	directURI string
	proxyURI  string
}

func startEnv(t *testing.T) env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	fdb, err := embedmongo.Start(ctx, embedmongo.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting embedded FerretDB: %v", err)
	}
	t.Cleanup(fdb.Stop)

	logs := &testenv.Output{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	upstream, err := proxy.NewUpstream(fdb.URI(), proxy.WithUpstreamLogger(logger))
	if err != nil {
		t.Fatalf("proxy.NewUpstream(%q): %v", fdb.URI(), err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := upstream.Close(ctx); err != nil {
			t.Errorf("closing the upstream: %v", err)
		}
	})

	srv := proxy.NewServer(upstream, proxy.WithLogger(logger))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening for the proxy: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxy Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("proxy Serve returned %v, want %v", err, proxy.ErrServerClosed)
		}
		if t.Failed() {
			t.Logf("proxy and upstream log:\n%s", logs.String())
		}
	})

	return env{
		directURI: fdb.URI(),
		proxyURI:  "mongodb://" + ln.Addr().String() + "/",
	}
}

// runScript runs one smoke script and checks that it passed.
func runScript(t *testing.T, d driver, uri string, direct bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := d.command(ctx, uri, direct)
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	combined := &testenv.Output{}
	cmd.Stdout = io.MultiWriter(&stdout, combined)
	cmd.Stderr = combined
	start := time.Now()
	err := cmd.Run()
	line := strings.Join(cmd.Args, " ")
	if ctx.Err() != nil {
		t.Fatalf("%s: did not finish within %s (%v); output:\n%s", line, scriptTimeout, err, combined)
	}
	if err != nil {
		t.Fatalf("%s: %v (want exit code 0); output:\n%s", line, err, combined)
	}
	if !strings.Contains(stdout.String(), "ok:") {
		t.Fatalf("%s: exit code 0 but no \"ok:\" line on stdout; output:\n%s", line, combined)
	}
	t.Logf("%s (%s): %s", d.name, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()))
}

// TestClients runs each driver's smoke script directly against FerretDB and through the proxy;
// both runs must pass.
func TestClients(t *testing.T) {
	dir := clientsDir(t)
	drivers := []driver{pythonDriver(dir), nodeDriver(dir)}
	var why []string
	for _, d := range drivers {
		if d.missing != "" {
			why = append(why, d.missing)
		}
	}
	if len(why) == len(drivers) {
		missing(t, strings.Join(why, "; "))
	}

	e := startEnv(t)
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			if d.missing != "" {
				missing(t, d.missing)
			}
			// The direct run first: when it fails too, the script or FerretDB is at fault,
			// not the proxy.
			t.Run("direct", func(t *testing.T) { runScript(t, d, e.directURI, true) })
			t.Run("proxy", func(t *testing.T) { runScript(t, d, e.proxyURI, false) })
		})
	}
}
