package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ErrUpstreamURI means the upstream connection string cannot be used by the proxy.
var ErrUpstreamURI = errors.New("invalid upstream URI")

// Upstream is the MongoDB deployment behind the proxy. It watches the deployment's topology with
// the driver's monitoring (SDAM) so that every new client connection is pinned to the current
// primary of a replica set, or to the one server of a standalone, and it dials those pinned
// connections itself, with the TLS settings of the URI. It also tells a new connection whether
// its server is a standalone, until that server's own hello reply says (standalone.go).
type Upstream struct {
	seeds       []string
	tls         *tls.Config
	dialTimeout time.Duration
	monitor     *mongo.Client
	target      atomic.Pointer[upstreamTarget] // nil or addr "" while unknown
	log         *slog.Logger
}

// upstreamTarget is the server client connections are pinned to, as the monitor last saw it.
type upstreamTarget struct {
	addr string
	// standalone is set for a standalone mongod: it refuses txnNumber (see standalone.go).
	standalone bool
}

// UpstreamOption configures an Upstream.
type UpstreamOption func(*Upstream)

// WithDialTimeout sets how long dialing the upstream for a new client connection may take,
// overriding the default 5s. A client whose upstream cannot be reached in that time gets an
// error reply rather than a hang.
func WithDialTimeout(d time.Duration) UpstreamOption { return func(u *Upstream) { u.dialTimeout = d } }

// WithUpstreamLogger sets the logger for topology changes, overriding slog.Default().
func WithUpstreamLogger(l *slog.Logger) UpstreamOption { return func(u *Upstream) { u.log = l } }

// NewUpstream validates a mongodb:// or mongodb+srv:// URI and starts monitoring the deployment
// it names. It does not wait for the deployment to answer: a proxy may start before its upstream.
// Close stops the monitoring.
func NewUpstream(uri string, opts ...UpstreamOption) (*Upstream, error) {
	u := &Upstream{dialTimeout: 5 * time.Second, log: slog.Default()}
	for _, o := range opts {
		o(u)
	}
	co := options.Client().ApplyURI(uri)
	if err := co.Validate(); err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUpstreamURI, redactURI(uri), err)
	}
	if co.LoadBalanced != nil && *co.LoadBalanced {
		return nil, fmt.Errorf("%w %q: loadBalanced=true is not supported; name the servers behind the load balancer", ErrUpstreamURI, redactURI(uri))
	}
	if len(co.Hosts) == 0 {
		return nil, fmt.Errorf("%w %q: no host", ErrUpstreamURI, redactURI(uri))
	}
	u.seeds = co.Hosts
	u.tls = co.TLSConfig
	if co.ConnectTimeout == nil {
		co.SetConnectTimeout(u.dialTimeout)
	}
	co.SetServerMonitor(&event.ServerMonitor{TopologyDescriptionChanged: u.topologyChanged})
	// The monitor only runs hello; it never authenticates or runs an operation.
	co.Auth = nil
	client, err := mongo.Connect(co)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrUpstreamURI, redactURI(uri), err)
	}
	u.monitor = client
	return u, nil
}

// topologyChanged follows the SDAM events and remembers which server takes writes.
func (u *Upstream) topologyChanged(e *event.TopologyDescriptionChangedEvent) {
	target := pickTarget(e.NewDescription.Servers)
	if old := u.target.Swap(&target); (old == nil && target.addr != "") || (old != nil && *old != target) {
		u.log.Info("upstream target changed", "target", target.addr, "standalone", target.standalone, "topology", e.NewDescription.Kind)
	}
}

// pickTarget chooses the server that client connections are pinned to: a replica set's
// primary, a standalone, or the first mongos; addr "" when none is known.
func pickTarget(servers []event.ServerDescription) upstreamTarget {
	var mongos string
	for _, s := range servers {
		switch s.Kind {
		case "RSPrimary":
			return upstreamTarget{addr: s.Addr.String()}
		case "Standalone":
			return upstreamTarget{addr: s.Addr.String(), standalone: true}
		case "Mongos":
			if mongos == "" {
				mongos = s.Addr.String()
			}
		}
	}
	return upstreamTarget{addr: mongos}
}

// Target returns the server new client connections are pinned to, and whether the monitor has
// found it yet. Until it has, Dial uses the first host of the URI.
func (u *Upstream) Target() (string, bool) {
	if t := u.target.Load(); t != nil && t.addr != "" {
		return t.addr, true
	}
	return u.seeds[0], false
}

// currentTarget is the target the monitor knows, or the URI's first host with standalone
// unknown (false).
func (u *Upstream) currentTarget() upstreamTarget {
	if t := u.target.Load(); t != nil && t.addr != "" {
		return *t
	}
	return upstreamTarget{addr: u.seeds[0]}
}

// Dial opens a new connection to the current target, with TLS when the URI asks for it.
func (u *Upstream) Dial(ctx context.Context) (net.Conn, error) {
	c, _, err := u.dial(ctx)
	return c, err
}

// dial is Dial that also says what the monitor knew of the server it dialled.
func (u *Upstream) dial(ctx context.Context) (net.Conn, upstreamTarget, error) {
	t := u.currentTarget()
	addr := t.addr
	ctx, cancel := context.WithTimeout(ctx, u.dialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 2 * time.Minute}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, t, fmt.Errorf("dialing upstream %s: %w", addr, err)
	}
	if u.tls == nil {
		return c, t, nil
	}
	cfg := u.tls.Clone()
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		host, _, _ := net.SplitHostPort(addr)
		cfg.ServerName = host
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, t, fmt.Errorf("TLS handshake with upstream %s: %w", addr, err)
	}
	return tc, t, nil
}

// Healthy reports, for health checks, whether the monitor knows a server to pin connections to.
func (u *Upstream) Healthy() error {
	if _, ok := u.Target(); !ok {
		return fmt.Errorf("no primary or standalone upstream server is known (seeds %v)", u.seeds)
	}
	return nil
}

// Close stops monitoring the upstream. Connections already dialled are not affected.
func (u *Upstream) Close(ctx context.Context) error {
	return u.monitor.Disconnect(ctx)
}

// redactURI hides the user information of a connection string for logs and errors.
func redactURI(uri string) string {
	i := strings.Index(uri, "://")
	if i < 0 {
		return uri
	}
	rest := uri[i+3:]
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return uri
	}
	return uri[:i+3] + "REDACTED" + rest[at:]
}
