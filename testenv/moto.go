// Package testenv starts the servers that tandem's tests need and that do not run in-process:
// for now moto, which serves DynamoDB (and DynamoDB Streams) on a loopback port. It is for tests
// only; nothing in the tandem binary imports it.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ErrMotoMissing means the Python interpreter or the moto package is not installed; `make
// clients` installs both into .venv.
var ErrMotoMissing = errors.New("moto is not installed (run `make clients`)")

// Credentials and region that the clients of a moto server use; moto accepts any.
const (
	MotoRegion    = "us-east-1"
	MotoAccessKey = "testing"
	MotoSecretKey = "testing"
)

// motoStartTimeout bounds how long StartMoto waits for the server to answer.
const motoStartTimeout = 30 * time.Second

// Moto is a running moto server.
type Moto struct {
	endpoint string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	stderr   *Output
	stopOnce sync.Once
}

// Endpoint returns the server's URL, http://127.0.0.1:PORT, for the AWS SDK's BaseEndpoint.
func (m *Moto) Endpoint() string { return m.endpoint }

// PID returns the server's process id.
func (m *Moto) PID() int { return m.cmd.Process.Pid }

// Python returns the interpreter tests use: $TANDEM_PYTHON, or else .venv/bin/python in the
// folder of the go.mod found by walking up from the working directory.
func Python() (string, error) {
	if p := os.Getenv("TANDEM_PYTHON"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".venv", "bin", "python"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory: %w", ErrMotoMissing)
		}
		dir = parent
	}
}

// StartMoto starts `python -m moto.server` on a free loopback port and returns once it answers
// HTTP, within 30 s. The caller must Stop it. An interpreter or moto that is not installed gives
// an error wrapping ErrMotoMissing.
func StartMoto(ctx context.Context) (*Moto, error) {
	python, err := Python()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(python); err != nil {
		return nil, fmt.Errorf("python %s: %v: %w", python, err, ErrMotoMissing)
	}
	// A port freed here could be taken again before moto binds it: try a few.
	var lastErr error
	for range 3 {
		m, err := startMotoOnce(ctx, python)
		if err == nil {
			return m, nil
		}
		if errors.Is(err, ErrMotoMissing) || ctx.Err() != nil {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

func startMotoOnce(ctx context.Context, python string) (*Moto, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("moto: choosing a port: %w", err)
	}
	m := &Moto{
		endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		done:     make(chan struct{}),
		stderr:   &Output{Max: 64 << 10},
	}
	// Not exec.CommandContext: the server outlives ctx, which bounds only the start.
	m.cmd = exec.Command(python, "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	m.cmd.Stdout = m.stderr
	m.cmd.Stderr = m.stderr
	m.cmd.SysProcAttr = sysProcAttr()
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("moto: starting %s: %v: %w", python, err, ErrMotoMissing)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.done)
	}()

	deadline := time.NewTimer(motoStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-m.done:
			out := m.stderr.String()
			if strings.Contains(out, "No module named") {
				return nil, fmt.Errorf("moto: %s: %w", lastLine(out), ErrMotoMissing)
			}
			return nil, fmt.Errorf("moto exited while starting: %s", lastLine(out))
		case <-ctx.Done():
			m.Stop()
			return nil, fmt.Errorf("moto: waiting for %s: %w", m.endpoint, ctx.Err())
		case <-deadline.C:
			m.Stop()
			return nil, fmt.Errorf("moto: no answer on %s after %s: %s", m.endpoint, motoStartTimeout, lastLine(m.stderr.String()))
		case <-tick.C:
			resp, err := client.Get(m.endpoint + "/moto-api/")
			if err == nil {
				resp.Body.Close()
				return m, nil
			}
		}
	}
}

// Stop kills the server by its PID and waits for it to exit. It may be called more than once.
func (m *Moto) Stop() {
	m.stopOnce.Do(func() {
		_ = m.cmd.Process.Kill()
		<-m.done
	})
}

// Log returns the last 64 KiB of the server's output, for failing tests.
func (m *Moto) Log() string { return m.stderr.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// MotoRequired reports whether tests must fail, not skip, without moto: TANDEM_REQUIRE_MOTO=1 or
// TANDEM_REQUIRE_CLIENTS=1 (which `make test` sets).
func MotoRequired() bool {
	return required("TANDEM_REQUIRE_MOTO")
}

// SkipOrFail ends a test that could not get moto: with t.Skip when moto is missing and not
// required, with t.Fatal otherwise. err is StartMoto's error, nil does nothing.
func SkipOrFail(tb testing.TB, err error) {
	tb.Helper()
	skipOrFail(tb, err, ErrMotoMissing, "TANDEM_REQUIRE_MOTO", "moto", "DynamoDB tests")
}

// StartMotoT starts moto for one test and stops it when the test ends; see SkipOrFail.
func StartMotoT(tb testing.TB) *Moto {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), motoStartTimeout+5*time.Second)
	defer cancel()
	m, err := StartMoto(ctx)
	SkipOrFail(tb, err)
	tb.Cleanup(m.Stop)
	return m
}
