package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/tandemdb/tandem/embedmongo"
)

// FerretDBBinEnv names the FerretDB server binary (testenv/ferretdb) that `make test` builds
// without the race detector. Unset, StartMongo runs FerretDB inside the test process.
const FerretDBBinEnv = "TANDEM_FERRETDB_BIN"

// ferretDBStartTimeout bounds a start (SQLite opens in milliseconds; a loaded machine is slow).
const ferretDBStartTimeout = time.Minute

// Mongo is a test's MongoDB: the embedded FerretDB, in a process of its own (with
// TANDEM_FERRETDB_BIN) or in the test process.
type Mongo struct {
	dir, uri string
	inproc   *embedmongo.Server // without the binary

	cmd      *exec.Cmd
	done     chan struct{}
	out      *Output
	stopOnce sync.Once
}

// StartMongo starts FerretDB on dir (its SQLite files, kept by Stop) and addr ("127.0.0.1:0"
// for any free port) and returns once it accepts connections. With TANDEM_FERRETDB_BIN set the
// server is that binary, a child that the kernel kills if the test process dies; a binary that
// is missing or does not start is an error, never a silent fall-back to the slower in-process
// server. Unset (plain `go test`), FerretDB runs in the test process.
func StartMongo(ctx context.Context, dir, addr string) (*Mongo, error) {
	bin := os.Getenv(FerretDBBinEnv)
	if bin == "" {
		s, err := embedmongo.Start(ctx, embedmongo.Options{Dir: dir, Addr: addr})
		if err != nil {
			return nil, err
		}
		return &Mongo{dir: dir, uri: s.URI(), inproc: s}, nil
	}
	m := &Mongo{dir: dir, done: make(chan struct{}), out: &Output{Max: 64 << 10}}
	m.cmd = exec.Command(bin, "-dir", dir, "-addr", addr) // not CommandContext: it outlives ctx
	m.cmd.Stderr = m.out
	m.cmd.SysProcAttr = sysProcAttr()
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("FerretDB: %w", err)
	}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("FerretDB: starting %s (%s; `make test` builds it): %w", bin, FerretDBBinEnv, err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.done)
	}()
	uri := make(chan string, 1)
	go readURI(stdout, uri, m.out)
	timer := time.NewTimer(ferretDBStartTimeout)
	defer timer.Stop()
	select {
	case m.uri = <-uri:
		return m, nil
	case <-m.done:
		return nil, fmt.Errorf("FerretDB (%s) exited while starting (%s): %s", bin, m.cmd.ProcessState, lastLine(m.out.String()))
	case <-ctx.Done():
		m.Kill()
		return nil, fmt.Errorf("FerretDB: waiting for it to listen: %w", ctx.Err())
	case <-timer.C:
		m.Kill()
		return nil, fmt.Errorf("FerretDB: not listening after %s: %s", ferretDBStartTimeout, lastLine(m.out.String()))
	}
}

// readURI reads the server's "URI …" line, then copies the rest of its output to rest.
func readURI(r io.Reader, uri chan<- string, rest io.Writer) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "URI "); ok {
			uri <- u
			break
		}
		fmt.Fprintln(rest, sc.Text())
	}
	_, _ = io.Copy(rest, r)
}

// URI is the server's connection string.
func (m *Mongo) URI() string { return m.uri }

// Dir is the folder of its SQLite files.
func (m *Mongo) Dir() string { return m.dir }

// OutOfProcess reports whether the server is a process of its own.
func (m *Mongo) OutOfProcess() bool { return m.inproc == nil }

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it. It may be called
// more than once.
func (m *Mongo) Stop() {
	if m.inproc != nil {
		m.inproc.Stop()
		return
	}
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Signal(os.Interrupt)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
	})
}

// Kill ends an out-of-process server with SIGKILL (in-process: Stop) and waits for it.
func (m *Mongo) Kill() {
	if m.inproc != nil {
		m.inproc.Stop()
		return
	}
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Kill()
		<-m.done
	})
}

// Restart kills the server and starts it again on the same folder and address, so that clients
// reconnect to it with the data kept: a store that crashed and came back.
func (m *Mongo) Restart(ctx context.Context) (*Mongo, error) {
	u, err := url.Parse(m.uri)
	if err != nil {
		return nil, fmt.Errorf("FerretDB: its URI %q: %w", m.uri, err)
	}
	m.Kill()
	var last error
	for attempt := 0; attempt < 40; attempt++ {
		n, err := StartMongo(ctx, m.dir, u.Host)
		if err == nil {
			return n, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond) // the port may take a moment to be free again
	}
	return nil, errors.Join(fmt.Errorf("FerretDB: restarting on %s", u.Host), last)
}
