package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tandemdb/tandem/embedmongo"
)

// storeProcess is the MongoDB of a run without -uri: FerretDB (and, on PostgreSQL, its private
// cluster) in a child process of its own (this binary re-executed with -child-store), so that
// neither its CPU in the Go runtime (its garbage collections) nor its memory counts as the
// bench's or the backfill's.
type storeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	uri   string
	kind  string
}

// startStore starts the store child for kind (sqlite or postgresql) and waits for its URI.
func startStore(ctx context.Context, kind string) (*storeProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-child-store", kind)
	// The store dies with this process; on SIGTERM it stops PostgreSQL first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the store process: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	uri, ok := strings.CutPrefix(strings.TrimSpace(line), "URI ")
	if err != nil || !ok {
		_ = stdin.Close()
		werr := cmd.Wait()
		return nil, fmt.Errorf("the %s store process printed %q (%v), then ended: %v", kind, line, err, werr)
	}
	return &storeProcess{cmd: cmd, stdin: stdin, uri: uri, kind: kind}, nil
}

// stop closes the child's standard input, which makes it stop its servers, and waits.
func (s *storeProcess) stop() {
	if s == nil || s.cmd == nil {
		return
	}
	_ = s.stdin.Close()
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		<-done
	}
	s.cmd = nil
}

// describe names the store for the header.
func storeName(kind string) string {
	if kind == "postgresql" {
		return "FerretDB 1.24 on PostgreSQL (its postgresql handler; a private cluster, fsync off), in a child process"
	}
	return "FerretDB 1.24 on SQLite, in a child process"
}

// childStore is the store process: it starts the servers, prints "URI <uri>", and stops them
// when its standard input closes or it gets SIGTERM or SIGINT.
func childStore(kind string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "backfillbench store:", err)
		return 1
	}
	var opts embedmongo.Options
	var pg *embedmongo.PostgreSQL
	switch kind {
	case "postgresql":
		var err error
		if pg, err = embedmongo.StartPostgreSQL(ctx, embedmongo.PostgreSQLOptions{}); err != nil {
			return fail(err)
		}
		defer func() {
			if err := pg.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "backfillbench store:", err)
			}
		}()
		opts.PostgreSQLURL = pg.URL()
		// FerretDB's PostgreSQL pool holds 50 connections by default; the bench's clients
		// and its catalog stay well below.
	case "sqlite":
	default:
		return fail(fmt.Errorf("unknown store %q (sqlite, postgresql)", kind))
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := embedmongo.Start(ctx, opts)
	if err != nil {
		return fail(err)
	}
	defer srv.Stop()
	fmt.Println("URI " + srv.URI())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-eof:
	case <-sigs:
	}
	return 0
}
