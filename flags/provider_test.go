package flags_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
)

// propagation is how long a flag change may take to reach a provider in these tests: the
// design promises a second; the margin is for a loaded test machine.
const propagation = 3 * time.Second

// registerProvider binds p to a domain of its own and unbinds it (shutting p down) at cleanup.
func registerProvider(t *testing.T, domain string, p *flags.Provider) *openfeature.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := flags.Register(ctx, domain, p)
	require.NoError(t, err)
	t.Cleanup(func() { _ = openfeature.SetNamedProviderAndWait(domain, openfeature.NoopProvider{}) })
	return cl
}

func TestProvidersInTwoDomainsSeeAFlip(t *testing.T) {
	c := newCatalog(t)
	register(t, c, "users-v2")
	mgr := flags.NewManager(c)
	ctx := context.Background()

	var evs [2]*flags.Evaluator
	var provs [2]*flags.Provider
	var changes sync.Map // domain → []string of FlagChanges seen
	for i, d := range []string{t.Name() + "-proxy-a", t.Name() + "-proxy-b"} {
		p, err := flags.NewProvider(c, flags.WithProviderName(d))
		require.NoError(t, err)
		cl := registerProvider(t, d, p)
		evs[i], provs[i] = flags.NewEvaluator(cl), p
		t.Cleanup(evs[i].Close)
		d := d
		cb := openfeature.EventCallback(ptr(func(e openfeature.EventDetails) { changes.Store(d, e.FlagChanges) }))
		cl.AddHandler(openfeature.ProviderConfigChange, cb)
	}
	fc := flags.Context{Migration: "users-v2", Database: "app", Collection: "users", App: "billing"}
	for _, e := range evs {
		assert.Equal(t, flags.PhaseOff, e.Evaluate(ctx, fc).Phase)
	}
	gens := [2]uint64{evs[0].Generation(), evs[1].Generation()}

	flip := time.Now()
	want, err := mgr.Advance(ctx, "users-v2", flags.PhaseShadow, "alice", "flip")
	require.NoError(t, err)
	var seen [2]time.Duration
	waitFor(t, propagation, "both proxies see phase shadow", func() bool {
		done := true
		for i, e := range evs {
			if seen[i] == 0 {
				if v := e.Evaluate(ctx, fc); v == want {
					seen[i] = time.Since(flip)
				} else {
					done = false
				}
			}
		}
		return done
	})
	t.Logf("flip seen after %s (proxy a) and %s (proxy b), poll interval %s", seen[0], seen[1], flags.DefaultPollInterval)
	for i, e := range evs {
		d := t.Name() + []string{"-proxy-a", "-proxy-b"}[i]
		waitFor(t, propagation, "generation moves", func() bool { return e.Generation() > gens[i] })
		waitFor(t, propagation, "change event", func() bool { _, ok := changes.Load(d); return ok })
		got, _ := changes.Load(d)
		assert.Equal(t, []string{"users-v2.phase"}, got, "the event names the changed flag")
		v, ok := provs[i].Snapshot("users-v2")
		assert.True(t, ok)
		assert.Equal(t, want, v)
	}
}

func ptr[T any](v T) *T { return &v }

func TestProviderResolution(t *testing.T) {
	c := newCatalog(t)
	register(t, c, "users-v2")
	mgr := flags.NewManager(c)
	ctx := context.Background()
	_, err := mgr.Set(ctx, "users-v2", map[string]string{"phase": "shadow", "shadow_read_percent": "12.5", "write_block": "true"}, "a", "b")
	require.NoError(t, err)
	p, err := flags.NewProvider(c, flags.WithPollInterval(20*time.Millisecond))
	require.NoError(t, err)
	_, ok := p.Snapshot("users-v2")
	assert.False(t, ok, "nothing is read before Init")
	cl := registerProvider(t, t.Name(), p)
	ec := openfeature.NewEvaluationContext("billing", map[string]any{"database": "app"})

	s, err := cl.StringValueDetails(ctx, "users-v2.phase", "off", ec)
	require.NoError(t, err)
	assert.Equal(t, "shadow", s.Value)
	assert.Equal(t, openfeature.StaticReason, s.Reason)
	assert.Equal(t, "shadow", s.Variant)
	rev, err := s.FlagMetadata.GetInt("revision")
	require.NoError(t, err)
	assert.Equal(t, int64(2), rev)
	stale, err := s.FlagMetadata.GetBool("stale")
	require.NoError(t, err)
	assert.False(t, stale)

	f, err := cl.FloatValue(ctx, "users-v2.shadow_read_percent", 0, ec)
	require.NoError(t, err)
	assert.Equal(t, 12.5, f)
	b, err := cl.BooleanValue(ctx, "users-v2.write_block", false, ec)
	require.NoError(t, err)
	assert.True(t, b)
	rs, err := cl.StringValue(ctx, "users-v2.read_source", "x", ec)
	require.NoError(t, err)
	assert.Equal(t, "old", rs)
	o, err := cl.ObjectValue(ctx, "users-v2.shadow_read_percent", nil, ec)
	require.NoError(t, err)
	assert.Equal(t, 12.5, o)

	// A migration not in the catalog: the caller's default, reason DEFAULT, no error.
	d, err := cl.StringValueDetails(ctx, "orders-v3.phase", "off", ec)
	require.NoError(t, err)
	assert.Equal(t, "off", d.Value)
	assert.Equal(t, openfeature.DefaultReason, d.Reason)

	// Unknown flag names and keys without a flag: FLAG_NOT_FOUND.
	for _, key := range []string{"users-v2.phse", "phase", ".phase", "users-v2"} {
		d, err := cl.StringValueDetails(ctx, key, "dflt", ec)
		require.Error(t, err, key)
		assert.Equal(t, openfeature.FlagNotFoundCode, d.ErrorCode, key)
		assert.Equal(t, "dflt", d.Value)
	}
	// The wrong type: TYPE_MISMATCH.
	bd, err := cl.BooleanValueDetails(ctx, "users-v2.phase", false, ec)
	require.Error(t, err)
	assert.Equal(t, openfeature.TypeMismatchCode, bd.ErrorCode)
	id, err := cl.IntValueDetails(ctx, "users-v2.shadow_read_percent", 7, ec)
	require.Error(t, err)
	assert.Equal(t, openfeature.TypeMismatchCode, id.ErrorCode)
	assert.Equal(t, int64(7), id.Value)

	v, ok := p.Snapshot("users-v2")
	require.True(t, ok)
	assert.Equal(t, flags.Values{Phase: "shadow", ReadSource: "old", ShadowReadPercent: 12.5, WriteBlock: true, Revision: 2}, v)
	_, ok = p.Snapshot("orders-v3")
	assert.False(t, ok)

	// A migration registered later appears, with an event naming its flags.
	ev := flags.NewEvaluator(cl)
	defer ev.Close()
	g := ev.Generation()
	register(t, c, "orders-v3")
	waitFor(t, propagation, "new migration in the snapshot", func() bool { _, ok := p.Snapshot("orders-v3"); return ok })
	waitFor(t, propagation, "generation moves", func() bool { return ev.Generation() > g })

	_, err = flags.NewProvider(c, flags.WithPollInterval(0))
	assert.ErrorContains(t, err, "poll interval 0s")
	_, err = flags.NewProvider(nil)
	assert.ErrorContains(t, err, "nil catalog")
	reg := prometheus.NewRegistry()
	_, err = flags.NewProvider(c, flags.WithMetrics(reg))
	require.NoError(t, err)
	_, err = flags.NewProvider(c, flags.WithMetrics(reg))
	assert.ErrorContains(t, err, "registering metrics", "two providers with one name in one registry")
	_, err = flags.Register(ctx, "", p)
	assert.ErrorContains(t, err, "empty OpenFeature domain")
}

func TestEvaluatorContextAndFallback(t *testing.T) {
	ctx := context.Background()
	// A domain with no provider evaluates through OpenFeature's no-op provider: defaults.
	e := flags.NewEvaluator(openfeature.NewClient(t.Name() + "-nothing"))
	defer e.Close()
	assert.Equal(t, flags.Defaults(), e.Evaluate(ctx, flags.Context{Migration: "users-v2"}))
	assert.Equal(t, flags.Defaults(), e.Evaluate(ctx, flags.Context{}))

	// The evaluation context reaches the provider.
	c := newCatalog(t)
	register(t, c, "users-v2")
	p, err := flags.NewProvider(c)
	require.NoError(t, err)
	cl := registerProvider(t, t.Name(), p)
	var got atomic.Pointer[openfeature.EvaluationContext]
	cl.AddHooks(contextHook{seen: &got})
	e2 := flags.NewEvaluator(cl)
	defer e2.Close()
	e2.Evaluate(ctx, flags.Context{Migration: "users-v2", Database: "app", Collection: "users", App: "billing", Tenant: "acme"})
	ec := got.Load()
	require.NotNil(t, ec)
	assert.Equal(t, "acme", ec.TargetingKey(), "the tenant is the targeting key")
	assert.Equal(t, map[string]any{"migration": "users-v2", "database": "app", "collection": "users", "app": "billing", "tenant": "acme"}, ec.Attributes())
	e2.Evaluate(ctx, flags.Context{Migration: "users-v2", App: "billing"})
	assert.Equal(t, "billing", got.Load().TargetingKey(), "without a tenant, the app is")
}

// contextHook records the evaluation context of the last evaluation.
type contextHook struct {
	openfeature.UnimplementedHook
	seen *atomic.Pointer[openfeature.EvaluationContext]
}

func (h contextHook) Before(_ context.Context, hc openfeature.HookContext, _ openfeature.HookHints) (*openfeature.EvaluationContext, error) {
	ec := hc.EvaluationContext()
	h.seen.Store(&ec)
	return nil, nil
}

// countingHandler counts log records at warning level and above.
type countingHandler struct {
	slog.Handler
	t        *testing.T
	warnings *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.warnings.Add(1)
	}
	var attrs []string
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
	h.t.Logf("log %s %s %v", r.Level, r.Message, attrs)
	return nil
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

// restartable is an embedded FerretDB that can be stopped and started again on the same
// address and data.
type restartable struct {
	dir, addr string
	srv       *embedmongo.Server
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{dir: t.TempDir()}
	r.start(t)
	u, err := url.Parse(r.srv.URI())
	require.NoError(t, err)
	r.addr = u.Host
	t.Cleanup(func() {
		if r.srv != nil {
			r.srv.Stop()
		}
	})
	return r
}

func (r *restartable) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedmongo.Start(ctx, embedmongo.Options{Dir: r.dir, Addr: r.addr})
	require.NoError(t, err)
	r.srv = srv
}

func (r *restartable) stop() {
	r.srv.Stop()
	r.srv = nil
}

func (r *restartable) connect(t *testing.T) *mongo.Client {
	t.Helper()
	cl, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + r.addr + "/").
		SetServerSelectionTimeout(500 * time.Millisecond).SetConnectTimeout(500 * time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Disconnect(context.Background()) })
	return cl
}

// openCatalogSoon opens the catalog on a client whose short timeouts are for the outage the
// test makes: on a loaded machine the first attempts may time out before the server is busy
// with anything of the test's, so it tries for up to 20s.
func openCatalogSoon(t *testing.T, mc *mongo.Client) (*catalog.Catalog, error) {
	t.Helper()
	var c *catalog.Catalog
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if c, err = catalog.Open(context.Background(), mc); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func TestProviderKeepsLastValuesWhileCatalogIsDown(t *testing.T) {
	srv := startRestartable(t)
	mc := srv.connect(t)
	ctx := context.Background()
	c, err := openCatalogSoon(t, mc)
	require.NoError(t, err)
	register(t, c, "users-v2")
	mgr := flags.NewManager(c)
	_, err = mgr.Set(ctx, "users-v2", map[string]string{"phase": "shadow"}, "a", "b")
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	var warnings atomic.Int64
	p, err := flags.NewProvider(c, flags.WithPollInterval(50*time.Millisecond), flags.WithRefreshTimeout(300*time.Millisecond),
		flags.WithMetrics(reg), flags.WithLogger(slog.New(countingHandler{Handler: slog.DiscardHandler, t: t, warnings: &warnings})))
	require.NoError(t, err)
	cl := registerProvider(t, t.Name(), p)
	e := flags.NewEvaluator(cl)
	defer e.Close()
	fc := flags.Context{Migration: "users-v2", App: "billing"}
	_, err = mgr.Advance(ctx, "users-v2", flags.PhaseDual, "alice", "dual")
	require.NoError(t, err)
	waitFor(t, propagation, "phase dual seen", func() bool { return e.Evaluate(ctx, fc).Phase == flags.PhaseDual })
	before := e.Evaluate(ctx, fc)

	srv.stop()
	down := time.Now()
	waitFor(t, 30*time.Second, "the provider notices the outage", p.Stale)
	t.Logf("outage noticed after %s", time.Since(down))
	waitFor(t, 30*time.Second, "OpenFeature marks the provider stale", func() bool { return cl.State() == openfeature.StaleState })
	// Stopping may flap (a refresh can still succeed while the server shuts down), which is a
	// second outage; once the server is gone, further failures are not logged again.
	warned, failures := warnings.Load(), gauge(t, reg, "tandem_flags_refresh_errors_total")
	require.GreaterOrEqual(t, warned, int64(1))
	waitFor(t, 30*time.Second, "several more failed refreshes", func() bool {
		return gauge(t, reg, "tandem_flags_refresh_errors_total") >= failures+3
	})
	assert.Equal(t, before, e.Evaluate(ctx, fc), "the last known values stay in force")
	d, err := cl.StringValueDetails(ctx, "users-v2.phase", "off", openfeature.EvaluationContext{})
	require.NoError(t, err)
	assert.Equal(t, "dual", d.Value)
	assert.Equal(t, openfeature.CachedReason, d.Reason)
	stale, _ := d.FlagMetadata.GetBool("stale")
	assert.True(t, stale)
	assert.Equal(t, warned, warnings.Load(), "the outage is logged once")
	assert.Equal(t, 1.0, gauge(t, reg, "tandem_flags_stale"))
	lastOK := gauge(t, reg, "tandem_flags_last_refresh_success_timestamp_seconds")
	assert.InDelta(t, float64(down.Unix()), lastOK, 30)

	gen := e.Generation()
	srv.start(t)
	waitFor(t, 30*time.Second, "the provider reads the catalog again", func() bool { return !p.Stale() })
	waitFor(t, propagation, "PROVIDER_READY moves the generation", func() bool { return e.Generation() > gen })
	assert.Equal(t, 0.0, gauge(t, reg, "tandem_flags_stale"))

	flip := time.Now()
	_, err = mgr.Set(ctx, "users-v2", map[string]string{"write_block": "true"}, "alice", "after the outage")
	require.NoError(t, err)
	took := waitFor(t, propagation, "a change after the restart is seen", func() bool { return e.Evaluate(ctx, fc).WriteBlock })
	t.Logf("change after the restart seen %s after it was made (%s of waiting)", time.Since(flip), took)
	d, err = cl.StringValueDetails(ctx, "users-v2.phase", "off", openfeature.EvaluationContext{})
	require.NoError(t, err)
	assert.Equal(t, openfeature.StaticReason, d.Reason)
	assert.Equal(t, openfeature.ReadyState, cl.State())
}

// TestProviderStartsWhileCatalogIsDown: a provider whose first read fails serves defaults (as
// PROVIDER_NOT_READY errors, so callers use their defaults), keeps polling and announces
// readiness once the catalog answers.
func TestProviderStartsWhileCatalogIsDown(t *testing.T) {
	srv := startRestartable(t)
	mc := srv.connect(t)
	ctx := context.Background()
	c, err := openCatalogSoon(t, mc)
	require.NoError(t, err)
	register(t, c, "users-v2")
	_, err = flags.NewManager(c).Set(ctx, "users-v2", map[string]string{"phase": "shadow"}, "a", "b")
	require.NoError(t, err)
	srv.stop()

	p, err := flags.NewProvider(c, flags.WithPollInterval(50*time.Millisecond), flags.WithRefreshTimeout(300*time.Millisecond))
	require.NoError(t, err)
	domain := t.Name()
	t.Cleanup(func() { _ = openfeature.SetNamedProviderAndWait(domain, openfeature.NoopProvider{}) })
	_, err = flags.Register(ctx, domain, p)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "first catalog read"), err.Error())
	cl := openfeature.NewClient(domain)
	e := flags.NewEvaluator(cl)
	defer e.Close()
	fc := flags.Context{Migration: "users-v2"}
	assert.Equal(t, flags.Defaults(), e.Evaluate(ctx, fc))
	_, err = cl.StringValue(ctx, "users-v2.phase", "off", openfeature.EvaluationContext{})
	assert.Error(t, err)

	gen := e.Generation()
	srv.start(t)
	waitFor(t, 30*time.Second, "values once the catalog answers", func() bool { return e.Evaluate(ctx, fc).Phase == flags.PhaseShadow })
	waitFor(t, propagation, "PROVIDER_READY moves the generation", func() bool { return e.Generation() > gen })
	assert.Equal(t, openfeature.ReadyState, cl.State())
}

// gauge reads one metric's value from a registry.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
