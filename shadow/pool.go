package shadow

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tandemdb/tandem/adapters"
)

// ErrPoolClosed is returned by a Pool after Close.
var ErrPoolClosed = errors.New("converge pool closed")

// Pool runs converges on a fixed set of workers, each with a bounded queue. A key always goes to
// the same worker (by the same hash as the engine's lock stripes), so converges of one key run
// one at a time, in the order they were submitted.
type Pool struct {
	e        *Engine
	queues   []chan job
	onResult func(Result, error)
	timeout  time.Duration // per converge; 0: none
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu     sync.RWMutex
	closed bool
}

type job struct {
	ctx  context.Context
	key  adapters.Key
	dir  Direction
	done chan outcome // nil: report through report, else onResult
	// report, when set, receives this job's outcome instead of onResult.
	report func(Result, error)
}

type outcome struct {
	res Result
	err error
}

// NewPool starts workers goroutines (default: the engine's stripe count), each with a queue of
// depth keys (default 1024). onResult, optional, receives the outcome of every submitted (not
// Do) converge, for instance to journal keys that failed to converge.
func (e *Engine) NewPool(workers, depth int, onResult func(Result, error)) *Pool {
	return e.newPool(workers, depth, onResult, 0)
}

// newPool is NewPool with a time limit on each submitted converge (0: none).
func (e *Engine) newPool(workers, depth int, onResult func(Result, error), timeout time.Duration) *Pool {
	if workers <= 0 {
		workers = len(e.stripes)
	}
	if depth <= 0 {
		depth = 1024
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{e: e, queues: make([]chan job, workers), onResult: onResult, timeout: timeout, ctx: ctx, cancel: cancel}
	for i := range p.queues {
		p.queues[i] = make(chan job, depth)
		p.wg.Add(1)
		go p.work(p.queues[i])
	}
	return p
}

func (p *Pool) work(q chan job) {
	defer p.wg.Done()
	for j := range q {
		ctx, cancel := j.ctx, context.CancelFunc(func() {})
		if p.timeout > 0 && j.done == nil {
			ctx, cancel = context.WithTimeout(ctx, p.timeout)
		}
		res, err := p.e.Converge(ctx, j.key, j.dir)
		cancel()
		switch {
		case j.done != nil:
			j.done <- outcome{res, err}
		case j.report != nil:
			j.report(res, err)
		case p.onResult != nil:
			p.onResult(res, err)
		}
	}
}

func (p *Pool) queue(key adapters.Key) chan job {
	return p.queues[stripeOf(adapters.KeyString(key), len(p.queues))]
}

// Submit queues a converge, waiting while the key's queue is full until ctx ends.
func (p *Pool) Submit(ctx context.Context, key adapters.Key, dir Direction) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrPoolClosed
	}
	select {
	case p.queue(key) <- job{ctx: p.ctx, key: key, dir: dir}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TrySubmit queues a converge if the key's queue has room and reports whether it did: the
// caller keeps a key it could not queue (the shadow phase journals it instead).
func (p *Pool) TrySubmit(key adapters.Key, dir Direction) bool {
	return p.trySubmit(key, dir, nil)
}

// trySubmit is TrySubmit with a callback for this job's outcome (nil: onResult).
func (p *Pool) trySubmit(key adapters.Key, dir Direction, report func(Result, error)) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	select {
	case p.queue(key) <- job{ctx: p.ctx, key: key, dir: dir, report: report}:
		return true
	default:
		return false
	}
}

// Do converges key on its worker and waits for the result (the dual phase acknowledges a
// client only after this).
func (p *Pool) Do(ctx context.Context, key adapters.Key, dir Direction) (Result, error) {
	done := make(chan outcome, 1)
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return Result{Key: key}, ErrPoolClosed
	}
	select {
	case p.queue(key) <- job{ctx: ctx, key: key, dir: dir, done: done}:
		p.mu.RUnlock()
	case <-ctx.Done():
		p.mu.RUnlock()
		return Result{Key: key}, ctx.Err()
	}
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		return Result{Key: key}, ctx.Err()
	}
}

// Close stops accepting work, finishes what is queued and waits for the workers. Cancelling
// ctx abandons the queued work: its converges fail with ctx's error (they are idempotent and
// the durable paths converge those keys again).
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, q := range p.queues {
			close(q)
		}
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		p.cancel()
		<-done
		return ctx.Err()
	}
}
