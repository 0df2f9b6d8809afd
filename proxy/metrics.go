package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// knownCommands are the command names that get their own metric label; any other name is
// counted as "other", so a client cannot grow the label set without bound.
var knownCommands = []string{
	"hello", "isMaster", "ismaster", "ping", "buildInfo", "buildinfo", "saslStart", "saslContinue",
	"authenticate", "logout", "getnonce", "endSessions", "killSessions", "refreshSessions",
	"startSession", "abortTransaction", "commitTransaction",
	"find", "getMore", "killCursors", "aggregate", "count", "distinct", "mapReduce",
	"insert", "update", "delete", "findAndModify", "bulkWrite",
	"create", "drop", "dropDatabase", "renameCollection", "collMod",
	"createIndexes", "dropIndexes", "listIndexes", "listCollections", "listDatabases",
	"collStats", "dbStats", "serverStatus", "hostInfo", "getParameter", "setParameter",
	"getLog", "getCmdLineOpts", "connectionStatus", "whatsmyuri", "explain", "validate",
	"createUser", "updateUser", "dropUser", "usersInfo", "createRole", "dropRole", "rolesInfo",
	"getLastError", "currentOp", "killOp", "shardCollection", "listShards", "atlasVersion",
	"replSetGetStatus", "getFreeMonitoringStatus", "dataSize", "profile",
}

// Metrics are the proxy's Prometheus collectors. Register them with the caller's registry
// through NewMetrics; the proxy never touches the global registry.
type Metrics struct {
	requests      *prometheus.CounterVec
	commandErrors *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	bytes         *prometheus.CounterVec
	openConns     prometheus.Gauge
	acceptedConns prometheus.Counter
	errors        *prometheus.CounterVec
	migration     *prometheus.CounterVec

	byCommand    map[string]*commandMetrics
	other        *commandMetrics
	bytesIn      prometheus.Counter
	bytesOut     prometheus.Counter
	errorsByKind map[string]prometheus.Counter
}

// commandMetrics holds one command's collectors, resolved once so the per-message path does
// no label hashing or allocation.
type commandMetrics struct {
	requests prometheus.Counter
	errors   prometheus.Counter
	duration prometheus.Observer
}

// Error kinds counted by tandem_proxy_errors_total.
const (
	errKindBadFrame      = "bad_frame"       // a client sent a malformed, oversized or unknown frame
	errKindBadReply      = "bad_reply"       // the upstream sent a frame the proxy could not parse
	errKindUpstreamDial  = "upstream_dial"   // the proxy could not connect to the upstream
	errKindUpstreamIO    = "upstream_io"     // a read or write on an upstream connection failed
	errKindClientIO      = "client_io"       // a read or write on a client connection failed
	errKindConnLimit     = "conn_limit"      // a connection was refused at the connection limit
	errKindIdleTimeout   = "idle_timeout"    // a connection was closed after the idle timeout
	errKindTLSHandshake  = "tls_handshake"   // a client's TLS handshake failed
	errKindHelloRewrite  = "hello_rewrite"   // a hello reply could not be rewritten
	errKindDrainTimeout  = "drain_timeout"   // shutdown closed a connection with requests in flight
	errKindUnmatchedResp = "unmatched_reply" // a reply answered no request the proxy had seen
)

var errorKinds = []string{
	errKindBadFrame, errKindBadReply, errKindUpstreamDial, errKindUpstreamIO, errKindClientIO,
	errKindConnLimit, errKindIdleTimeout, errKindTLSHandshake, errKindHelloRewrite,
	errKindDrainTimeout, errKindUnmatchedResp,
}

// NewMetrics creates the proxy's collectors and registers them with reg; a nil reg leaves them
// unregistered (useful in tests and benchmarks).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_proxy_requests_total",
			Help: "Requests received from clients, by command (\"other\" for commands without a label of their own).",
		}, []string{"command"}),
		commandErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_proxy_command_errors_total",
			Help: "Replies with ok: 0 sent back to clients, by command.",
		}, []string{"command"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_proxy_request_duration_seconds",
			Help:    "Time from a request's arrival at the proxy to the first byte of its reply leaving it, by command.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"command"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_proxy_bytes_total",
			Help: "Wire message bytes forwarded, by direction (client_to_upstream, upstream_to_client).",
		}, []string{"direction"}),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_proxy_open_connections",
			Help: "Client connections currently open.",
		}),
		acceptedConns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_proxy_connections_total",
			Help: "Client connections accepted.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_proxy_errors_total",
			Help: "Proxy-level errors by kind (bad_frame, bad_reply, upstream_dial, upstream_io, client_io, conn_limit, idle_timeout, tls_handshake, hello_rewrite, drain_timeout, unmatched_reply).",
		}, []string{"kind"}),
		migration: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_proxy_migration_requests_total",
			Help: "What the proxy did for requests on migrated collections, by migration and action (converged, sync_failed, unkeyed, pre_read, write_blocked, read_new, read_fallback, shadow_read, shadow_dropped, unparsed_write).",
		}, []string{"migration", "action"}),
		byCommand:    make(map[string]*commandMetrics, len(knownCommands)),
		errorsByKind: make(map[string]prometheus.Counter, len(errorKinds)),
	}
	for _, name := range knownCommands {
		m.byCommand[name] = m.newCommandMetrics(name)
	}
	m.other = m.newCommandMetrics("other")
	m.bytesIn = m.bytes.WithLabelValues("client_to_upstream")
	m.bytesOut = m.bytes.WithLabelValues("upstream_to_client")
	for _, k := range errorKinds {
		m.errorsByKind[k] = m.errors.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.commandErrors, m.duration, m.bytes, m.openConns, m.acceptedConns, m.errors, m.migration)
	}
	return m
}

func (m *Metrics) newCommandMetrics(label string) *commandMetrics {
	return &commandMetrics{
		requests: m.requests.WithLabelValues(label),
		errors:   m.commandErrors.WithLabelValues(label),
		duration: m.duration.WithLabelValues(label),
	}
}

// command returns the collectors for a command name with one map look-up: byCommand is keyed
// by every known name, and anything else is "other".
func (m *Metrics) command(name []byte) *commandMetrics {
	if cm, ok := m.byCommand[string(name)]; ok {
		return cm
	}
	return m.other
}

func (m *Metrics) error(kind string) { m.errorsByKind[kind].Inc() }
