package testenv

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Child is the running test binary started again as a child process, the pattern of the
// crash tests: its TestMain sees the environment the parent gave it and runs a process of the
// product (a backfill, a tailer) instead of the tests, so that the parent can SIGKILL it at any
// point. Its output (stdout and stderr) is kept, the last 256 KiB of it.
type Child struct {
	cmd   *exec.Cmd
	out   *Output
	stdin io.WriteCloser
	done  chan struct{}
	err   error // cmd.Wait's, once done is closed
}

// StartChild starts os.Args[0] with -test.run=^$ (no test runs, TestMain dispatches on env)
// and the parent's environment plus env. The kernel kills the child if the parent dies. Under
// the race detector the child skips the runtime's one-second sleep at exit (GORACE
// atexit_sleep_ms=0), which a test that starts many children would otherwise pay at every
// clean exit. The child's stdin is a pipe that CloseStdin closes.
func StartChild(env ...string) (*Child, error) {
	c := &Child{out: &Output{Max: 256 << 10}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(append(os.Environ(), env...), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = sysProcAttr()
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("child process: %w", err)
	}
	// The kernel sends Pdeathsig when the thread that started the child ends, not the process
	// (golang/go#27505): the child is started and waited for on one locked thread, which
	// therefore lives as long as the child.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting a child process of %s: %w", os.Args[0], err)
	}
	return c, nil
}

// PID is the child's process id.
func (c *Child) PID() int { return c.cmd.Process.Pid }

// Output is what the child wrote so far (its end, past 256 KiB).
func (c *Child) Output() string { return c.out.String() }

// Tail is the last n bytes of the child's output, marked as cut when it is longer.
func (c *Child) Tail(n int) string {
	s := c.out.String()
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Exited reports whether the child has ended, and with what: nil for exit status 0.
func (c *Child) Exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// CloseStdin closes the child's stdin: a child that reads it sees the end of its input.
func (c *Child) CloseStdin() { _ = c.stdin.Close() }

// Kill sends SIGKILL (nothing when the child has already ended) and waits for the end.
func (c *Child) Kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// Wait waits up to d for the child to end and returns nil for exit status 0. A child still
// running after d gets SIGQUIT first, so that the Go runtime writes every goroutine's stack into
// its output (where it hung), then SIGKILL 5 s later.
func (c *Child) Wait(d time.Duration) error {
	select {
	case <-c.done:
		return c.err
	case <-time.After(d):
	}
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.Kill()
	}
	return fmt.Errorf("child process %d did not end within %s", c.PID(), d)
}
