package proxy

import (
	"context"
	"sync"
	"time"
)

// deferredConverges are the converges the proxy runs a while after forwarding a write whose
// reply does not say when it is visible (unacknowledged writes, writes in a transaction; see
// interceptWrite). They belong to the server, not to a connection: a client that hangs up
// right after an unacknowledged write still has it converged. Shutdown waits for them, so
// none runs after it returns, into a writer its caller has closed since.
//
// wait lets each run at its time when it can (the write is more likely visible by then) and
// runs the rest at once when its ctx ends: earlier than planned, but handed to the writer,
// whose converge reads the latest state and whose journal catches what it misses. A key is
// never dropped.
type deferredConverges struct {
	mu      sync.Mutex
	pending map[*deferredConverge]struct{}
	stopped bool           // wait has begun: a converge scheduled now runs at once
	running sync.WaitGroup // one per pending converge, done once it has run
}

type deferredConverge struct {
	timer *time.Timer
	run   func()
}

// schedule runs fn after delay, or sooner if wait's ctx ends first. fn must not block.
func (d *deferredConverges) schedule(delay time.Duration, fn func()) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		fn()
		return
	}
	if d.pending == nil {
		d.pending = make(map[*deferredConverge]struct{})
	}
	dc := &deferredConverge{run: fn}
	d.pending[dc] = struct{}{}
	d.running.Add(1)
	dc.timer = time.AfterFunc(delay, func() {
		if d.claim(dc) {
			dc.run()
			d.running.Done()
		}
	})
	d.mu.Unlock()
}

// claim removes dc from the pending set; only the caller that removed it runs it.
func (d *deferredConverges) claim(dc *deferredConverge) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.pending[dc]; !ok {
		return false
	}
	delete(d.pending, dc)
	return true
}

// wait returns once every scheduled converge has run, each at its time; when ctx ends first it
// runs the remaining ones at once and returns ctx's error. Converges scheduled after wait has
// begun run at once. It is safe to call more than once, and concurrently.
func (d *deferredConverges) wait(ctx context.Context) error {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	done := make(chan struct{})
	go func() { d.running.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	d.mu.Lock()
	rest := make([]*deferredConverge, 0, len(d.pending))
	for dc := range d.pending {
		rest = append(rest, dc)
	}
	clear(d.pending)
	d.mu.Unlock()
	for _, dc := range rest {
		dc.timer.Stop()
		dc.run()
		d.running.Done()
	}
	<-done // converges whose timers had fired are running: let them finish
	return ctx.Err()
}
