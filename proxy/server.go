// Package proxy is tandem's MongoDB wire-protocol proxy. It pins each client connection to its
// own upstream connection and forwards every frame as it was read, so authentication, cursors,
// sessions and transactions behave exactly as against the upstream; it decodes each request
// just enough to know its command, database and collection, and rewrites only hello replies, so
// that drivers see one router at the proxy's address, and, when the upstream is a standalone,
// the retryable writes that router makes drivers send (their txnNumber; see standalone.go).
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// Server accepts client connections and pins each to an upstream connection.
type Server struct {
	upstream *Upstream
	cfg      config

	// base is the server's lifetime, the parent of every connection's context (as
	// net/http.Server's BaseContext): it ends when Shutdown gives up waiting, or on Close.
	base       context.Context
	cancelBase context.CancelFunc
	deferred   deferredConverges

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{}
	closing  bool
	nextID   atomic.Uint64
	connsWG  sync.WaitGroup
	draining chan struct{} // closed when Shutdown starts
}

type config struct {
	log         *slog.Logger
	metrics     *Metrics
	maxConns    int
	idleTimeout time.Duration
	tls         *tls.Config
	routes      *Routes // nil: every request passes through
}

// Option configures a Server.
type Option func(*config)

// WithLogger sets the structured logger, overriding slog.Default(). Document contents and
// credentials are never logged at info level or above.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithMetrics sets the collectors the server updates, overriding a private, unregistered set.
func WithMetrics(m *Metrics) Option { return func(c *config) { c.metrics = m } }

// WithMaxConns limits the number of open client connections, overriding the default 10000.
// A connection over the limit is closed at once and counted as a conn_limit error; 0 means
// no limit.
func WithMaxConns(n int) Option { return func(c *config) { c.maxConns = n } }

// WithIdleTimeout closes a client connection that has neither sent a request nor awaited a
// reply for d, overriding the default 30m; 0 disables the timeout. Drivers open a new pooled
// connection when they next need one.
func WithIdleTimeout(d time.Duration) Option { return func(c *config) { c.idleTimeout = d } }

// WithTLS serves TLS on the listener with cfg (certificates set by the caller).
func WithTLS(cfg *tls.Config) Option { return func(c *config) { c.tls = cfg } }

// NewServer returns a server that forwards to upstream.
func NewServer(upstream *Upstream, opts ...Option) *Server {
	cfg := config{log: slog.Default(), maxConns: 10000, idleTimeout: 30 * time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.metrics == nil {
		cfg.metrics = NewMetrics(nil)
	}
	if cfg.routes != nil {
		cfg.routes.bindMetrics(cfg.metrics)
	}
	base, cancel := context.WithCancel(context.Background())
	return &Server{
		upstream:   upstream,
		cfg:        cfg,
		base:       base,
		cancelBase: cancel,
		conns:      make(map[*conn]struct{}),
		draining:   make(chan struct{}),
	}
}

// Serve accepts connections on ln until Shutdown or Close; it always returns a non-nil error,
// ErrServerClosed after a shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.tls != nil {
		ln = tls.NewListener(ln, s.cfg.tls)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	s.cfg.log.Info("proxy listening", "addr", ln.Addr().String(), "tls", s.cfg.tls != nil)

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of file descriptors or similar: back off as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.cfg.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("accepting client connections on %s: %w", ln.Addr(), err)
		}
		delay = 0
		s.cfg.metrics.acceptedConns.Inc()
		c, ctx, ok := s.track(nc)
		if !ok {
			s.cfg.metrics.error(errKindConnLimit)
			s.cfg.log.Warn("connection refused: connection limit reached", "remote", nc.RemoteAddr().String(), "max_conns", s.cfg.maxConns)
			nc.Close()
			continue
		}
		go c.serve(ctx)
	}
}

// track registers a new connection unless the limit is reached or the server is closing, and
// returns it with its context.
func (s *Server) track(nc net.Conn) (*conn, context.Context, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || (s.cfg.maxConns > 0 && len(s.conns) >= s.cfg.maxConns) {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(s.base)
	c := newConn(s, nc, s.nextID.Add(1), cancel)
	s.conns[c] = struct{}{}
	s.connsWG.Add(1)
	s.cfg.metrics.openConns.Inc()
	return c, ctx, true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.cfg.metrics.openConns.Dec()
	s.connsWG.Done()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Addr returns the listener's address, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting connections, stops reading new requests, waits for the replies to
// requests already forwarded (their synchronous converges included), then closes every
// connection, and waits for the deferred converges of unacknowledged and transactional writes
// (at most 0.5s after the last such write). When ctx ends first, the remaining connections are
// closed at once, their pre-reads and converges stopped (the shadow writer journals the keys),
// the deferred converges handed to the writer at once, and ctx's error is returned. Either way,
// once it returns the proxy calls no ShadowWriter again: the writers may be closed.
//
// A graceful shutdown does not cut the converges of requests in flight short: in cutover that
// would turn their replies into writeConcernErrors.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.cancelBase()
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.draining)
		if s.ln != nil {
			s.ln.Close()
		}
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.startDrain()
	}
	done := make(chan struct{})
	go func() { s.connsWG.Wait(); close(done) }()
	forced := false
	select {
	case <-done:
	case <-ctx.Done():
		forced = true
		s.cancelBase()
		s.mu.Lock()
		for c := range s.conns {
			if c.inFlight() > 0 {
				s.cfg.metrics.error(errKindDrainTimeout)
			}
			c.close()
		}
		s.mu.Unlock()
		<-done
	}
	// No connection is left to schedule a deferred converge.
	err := s.deferred.wait(ctx)
	if forced {
		return ctx.Err()
	}
	return err
}

// Close closes the listener and every connection at once, ending their pre-reads and
// converges, and hands the deferred converges to their writers at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
