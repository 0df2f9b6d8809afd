package testenv

import (
	"bytes"
	"sync"
)

// Output collects a child process's output: a server's, or a crash test's child's. exec.Cmd
// copies stdout and stderr each from its own goroutine while the test may read what was
// written so far (to log what a stalled child said), so it is locked.
type Output struct {
	// Max, when positive, keeps only the last Max bytes (a server that logs for the whole run).
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	if over := o.buf.Len() - o.Max; o.Max > 0 && over > 0 {
		o.buf.Next(over)
	}
	return len(p), nil
}

// String is what was written so far (its last Max bytes).
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
