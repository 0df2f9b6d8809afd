package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/proxy"
)

// proxyOptions are the flags of `tandem proxy`, shared with `tandem demo`.
type proxyOptions struct {
	listen          string        // required; default 127.0.0.1:27018
	upstream        string        // required for `tandem proxy`
	admin           string        // optional; "" disables the admin listener
	tlsCert         string        // optional; with tlsKey, serve TLS
	tlsKey          string        // optional
	maxConns        int           // default 10000; 0 means no limit
	idleTimeout     time.Duration // default 30m; 0 disables
	dialTimeout     time.Duration // default 5s
	shutdownTimeout time.Duration // default 30s
}

func (o *proxyOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:27018", "address applications connect to (host:port)")
	f.StringVar(&o.admin, "admin", "127.0.0.1:9090", "admin HTTP listener for /metrics and /healthz (empty to disable)")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate file: serve TLS on --listen (needs --tls-key)")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file for --tls-cert")
	f.IntVar(&o.maxConns, "max-conns", 10000, "maximum open client connections (0: no limit)")
	f.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Minute, "close a client connection idle this long (0: never)")
	f.DurationVar(&o.dialTimeout, "upstream-dial-timeout", 5*time.Second, "how long connecting to the upstream may take before the client gets an error")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to wait for in-flight requests before closing connections")
}

func (o *proxyOptions) validate() error {
	if err := checkHostPort("--listen", o.listen); err != nil {
		return err
	}
	if o.admin != "" {
		if err := checkHostPort("--admin", o.admin); err != nil {
			return err
		}
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return usagef("--tls-cert and --tls-key must be given together")
	}
	switch {
	case o.maxConns < 0:
		return usagef("--max-conns %d: must be 0 or more", o.maxConns)
	case o.idleTimeout < 0:
		return usagef("--idle-timeout %s: must be 0 or more", o.idleTimeout)
	case o.dialTimeout <= 0:
		return usagef("--upstream-dial-timeout %s: must be more than 0", o.dialTimeout)
	case o.shutdownTimeout < 0:
		return usagef("--shutdown-timeout %s: must be 0 or more", o.shutdownTimeout)
	}
	return nil
}

func checkHostPort(flag, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("%s %q: want host:port: %v", flag, addr, err)
	}
	return nil
}

// stack is a running proxy with its upstream monitor and admin listener.
type stack struct {
	log      *slog.Logger
	upstream *proxy.Upstream
	server   *proxy.Server
	admin    *http.Server
	adminLn  net.Listener
	proxyLn  net.Listener
	serveErr chan error
	opts     proxyOptions
	mig      *migrationStack // nil without migrations
}

// startStack starts the proxy described by opts in front of upstreamURI, taking part in the
// migrations of mo (nil or empty: a pass-through proxy).
func startStack(ctx context.Context, opts proxyOptions, mo *migrationOptions, upstreamURI string, log *slog.Logger) (_ *stack, err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := proxy.NewMetrics(reg)
	s := &stack{log: log, serveErr: make(chan error, 2), opts: opts}
	defer func() {
		if err != nil {
			s.abort()
		}
	}()

	// The listeners first: a port in use fails at once, before anything connects anywhere.
	if s.proxyLn, err = listen("--listen", opts.listen); err != nil {
		return nil, err
	}
	if opts.admin != "" {
		if s.adminLn, err = listen("--admin", opts.admin); err != nil {
			return nil, err
		}
	}
	if s.upstream, err = proxy.NewUpstream(upstreamURI, proxy.WithDialTimeout(opts.dialTimeout), proxy.WithUpstreamLogger(log)); err != nil {
		return nil, usageError{err}
	}
	serverOpts := []proxy.Option{
		proxy.WithLogger(log), proxy.WithMetrics(metrics),
		proxy.WithMaxConns(opts.maxConns), proxy.WithIdleTimeout(opts.idleTimeout),
	}
	if opts.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(opts.tlsCert, opts.tlsKey)
		if err != nil {
			return nil, usagef("--tls-cert %s / --tls-key %s: %v", opts.tlsCert, opts.tlsKey, err)
		}
		serverOpts = append(serverOpts, proxy.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
	}
	if mo != nil && mo.enabled() {
		if s.mig, err = startMigrations(ctx, mo, upstreamURI, reg, log); err != nil {
			return nil, err
		}
		serverOpts = append(serverOpts, proxy.WithRoutes(s.mig.routes))
	}
	s.server = proxy.NewServer(s.upstream, serverOpts...)

	if s.adminLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("GET /healthz", s.healthz)
		if s.mig != nil {
			mux.Handle("/", s.mig.api) // the API under /v1/ and the dashboard

		}
		s.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.serveErr <- fmt.Errorf("admin listener: %w", err)
			}
		}()
		log.Info("admin listening", "url", s.adminURL())
	}
	go func() {
		if err := s.server.Serve(s.proxyLn); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			s.serveErr <- err
		}
	}()
	return s, nil
}

// abort undoes a start that failed half-way: whatever was opened is closed.
func (s *stack) abort() {
	if s.mig != nil {
		_ = s.mig.close(context.Background())
	}
	if s.upstream != nil {
		_ = s.upstream.Close(context.Background())
	}
	for _, ln := range []net.Listener{s.proxyLn, s.adminLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// listen opens the listener of flag, or says in one line why it cannot.
func listen(flag, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s %s: %v", flag, addr, se.Err)
		}
		return nil, fmt.Errorf("%s %s: %v", flag, addr, err)
	}
	return ln, nil
}

// healthz answers 200 when the proxy accepts connections and knows an upstream server to pin
// them to, 503 with the reason otherwise.
func (s *stack) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.upstream.Healthy(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy: %v\n", err)
		return
	}
	target, _ := s.upstream.Target()
	fmt.Fprintf(w, "ok: upstream %s\n", target)
}

// proxyURI is the connection string applications use.
func (s *stack) proxyURI() string {
	uri := "mongodb://" + s.proxyLn.Addr().String() + "/"
	if s.opts.tlsCert != "" {
		uri += "?tls=true"
	}
	return uri
}

func (s *stack) adminURL() string {
	if s.adminLn == nil {
		return ""
	}
	return "http://" + s.adminLn.Addr().String()
}

// wait blocks until ctx ends or a listener fails, then shuts everything down.
func (s *stack) wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "timeout", s.opts.shutdownTimeout)
	case err = <-s.serveErr:
		s.log.Error("listener failed; shutting down", "err", err)
	}
	return errors.Join(err, s.shutdown())
}

func (s *stack) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.shutdownTimeout)
	defer cancel()
	var errs []error
	if err := s.server.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("draining client connections: %w", err))
	}
	if s.mig != nil {
		if err := s.mig.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping migrations: %w", err))
		}
	}
	if s.admin != nil {
		if s.mig != nil {
			s.mig.api.Close() // end the dashboards' event streams, which Shutdown would wait for
		}
		if err := s.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping admin listener: %w", err))
		}
	}
	if err := s.upstream.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("stopping upstream monitor: %w", err))
	}
	return errors.Join(errs...)
}
