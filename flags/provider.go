package flags

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdb/tandem/catalog"
)

// Provider is an OpenFeature provider that serves migration flags from the catalog. Flag keys
// are "MIGRATION.FLAG", for example "users-v2.phase": phase and read_source are strings,
// shadow_read_percent a float, write_block a boolean.
//
// It polls the catalog and answers every evaluation from the snapshot it holds, so an
// evaluation never waits on the catalog. When the catalog cannot be read it keeps the last
// known values in force — it never falls back to defaults once it has loaded — and marks its
// answers with reason CACHED and flag metadata stale=true until a refresh succeeds again. A
// migration not in the catalog resolves to the caller's default with reason DEFAULT.
//
// Polling runs from Init (which OpenFeature calls when the provider is set) to Shutdown.
type Provider struct {
	cat *catalog.Catalog
	cfg providerConfig

	snap   atomic.Pointer[snapshot]
	stale  atomic.Bool // the last refresh failed after a successful one: values are last known
	events chan openfeature.Event
	// eventsWanted is set once somebody (OpenFeature) asked for the event channel; until then
	// events are not sent, so a provider used only through Snapshot never blocks on them.
	eventsWanted atomic.Bool

	mu      sync.Mutex // guards the poll loop's lifecycle
	cancel  context.CancelFunc
	done    chan struct{}
	outage  time.Time // when the current outage began (loop goroutine only)
	metrics *providerMetrics
}

// snapshot is every migration's flags as of one refresh.
type snapshot struct {
	migrations map[string]snapEntry
	at         time.Time
}

type snapEntry struct {
	values Values
	err    error // the stored flags could not be read
	// Built once per refresh rather than per evaluation: each flag's value as a variant name,
	// and the flag metadata for fresh and for stale answers (OpenFeature copies it).
	variants    [4]string
	meta, stale openfeature.FlagMetadata
}

func newSnapEntry(m catalog.Migration) snapEntry {
	v, err := valuesOf(m)
	e := snapEntry{values: v, err: err}
	for i, name := range Names {
		e.variants[i] = v.get(name)
	}
	e.meta = openfeature.FlagMetadata{"revision": v.Revision, "stale": false}
	e.stale = openfeature.FlagMetadata{"revision": v.Revision, "stale": true}
	return e
}

// ProviderOption configures NewProvider.
type ProviderOption func(*providerConfig)

type providerConfig struct {
	interval time.Duration
	timeout  time.Duration
	name     string
	logger   *slog.Logger
	reg      prometheus.Registerer
}

// Provider defaults.
const (
	DefaultPollInterval   = 100 * time.Millisecond
	DefaultRefreshTimeout = 2 * time.Second
	DefaultProviderName   = "tandem-catalog"
)

// WithPollInterval sets how often the catalog is read, overriding the default 100ms.
func WithPollInterval(d time.Duration) ProviderOption {
	return func(c *providerConfig) { c.interval = d }
}

// WithRefreshTimeout bounds one catalog read, overriding the default 2s. A read that takes
// longer counts as a failed refresh (the catalog is unreachable).
func WithRefreshTimeout(d time.Duration) ProviderOption {
	return func(c *providerConfig) { c.timeout = d }
}

// WithProviderName sets the provider's OpenFeature name and its metrics' "provider" label,
// overriding "tandem-catalog". Give each provider registered in one Prometheus registry its own.
func WithProviderName(name string) ProviderOption {
	return func(c *providerConfig) { c.name = name }
}

// WithLogger sets where the provider logs catalog outages, overriding a discarding logger.
func WithLogger(l *slog.Logger) ProviderOption { return func(c *providerConfig) { c.logger = l } }

// WithMetrics registers the provider's Prometheus collectors with reg: refresh errors, the
// time of the last successful refresh and whether last known values are in force. By default
// there are no metrics.
func WithMetrics(reg prometheus.Registerer) ProviderOption {
	return func(c *providerConfig) { c.reg = reg }
}

type providerMetrics struct {
	refreshErrors prometheus.Counter
	lastSuccess   prometheus.Gauge
	stale         prometheus.Gauge
}

// NewProvider returns a provider over cat. It reads nothing until Init.
func NewProvider(cat *catalog.Catalog, opts ...ProviderOption) (*Provider, error) {
	cfg := providerConfig{interval: DefaultPollInterval, timeout: DefaultRefreshTimeout, name: DefaultProviderName}
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cat == nil:
		return nil, errors.New("flags provider: nil catalog")
	case cfg.interval <= 0:
		return nil, fmt.Errorf("flags provider: poll interval %s: want more than 0", cfg.interval)
	case cfg.timeout <= 0:
		return nil, fmt.Errorf("flags provider: refresh timeout %s: want more than 0", cfg.timeout)
	case cfg.name == "":
		return nil, errors.New("flags provider: empty name")
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{cat: cat, cfg: cfg, events: make(chan openfeature.Event, 16)}
	if cfg.reg != nil {
		labels := prometheus.Labels{"provider": cfg.name}
		m := &providerMetrics{
			refreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "tandem_flags_refresh_errors_total", ConstLabels: labels,
				Help: "Catalog reads by the flags provider that failed.",
			}),
			lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "tandem_flags_last_refresh_success_timestamp_seconds", ConstLabels: labels,
				Help: "Unix time of the flags provider's last successful catalog read.",
			}),
			stale: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "tandem_flags_stale", ConstLabels: labels,
				Help: "1 while the catalog is unreachable and the last known flag values are in force.",
			}),
		}
		for _, c := range []prometheus.Collector{m.refreshErrors, m.lastSuccess, m.stale} {
			if err := cfg.reg.Register(c); err != nil {
				return nil, fmt.Errorf("flags provider %s: registering metrics: %w", cfg.name, err)
			}
		}
		p.metrics = m
	}
	return p, nil
}

// Metadata implements openfeature.FeatureProvider.
func (p *Provider) Metadata() openfeature.Metadata { return openfeature.Metadata{Name: p.cfg.name} }

// Hooks implements openfeature.FeatureProvider; there are none.
func (p *Provider) Hooks() []openfeature.Hook { return nil }

// EventChannel implements openfeature.EventHandler: PROVIDER_CONFIGURATION_CHANGED when a
// refresh finds changed flags, PROVIDER_STALE when the catalog becomes unreachable and
// PROVIDER_READY when it is read again (or first read after a failed Init).
func (p *Provider) EventChannel() <-chan openfeature.Event {
	p.eventsWanted.Store(true)
	return p.events
}

// Init implements openfeature.StateHandler; see InitWithContext.
func (p *Provider) Init(openfeature.EvaluationContext) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.timeout)
	defer cancel()
	return p.InitWithContext(ctx, openfeature.EvaluationContext{})
}

// InitWithContext implements openfeature.ContextAwareStateHandler: it reads the catalog once
// and starts polling. It fails if that first read fails; polling goes on regardless, and the
// first successful read then emits PROVIDER_READY. Until a first read succeeds, evaluations fail
// with PROVIDER_NOT_READY (callers get their defaults).
func (p *Provider) InitWithContext(ctx context.Context, _ openfeature.EvaluationContext) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil { // bound to a second domain: already running
		return nil
	}
	err := p.refreshWith(ctx, false)
	loopCtx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.loop(loopCtx, p.done)
	if err != nil {
		return fmt.Errorf("flags provider %s: first catalog read: %w", p.cfg.name, err)
	}
	return nil
}

// Shutdown implements openfeature.StateHandler: it stops polling and waits for it.
func (p *Provider) Shutdown() { _ = p.ShutdownWithContext(context.Background()) }

// ShutdownWithContext implements openfeature.ContextAwareStateHandler.
func (p *Provider) ShutdownWithContext(ctx context.Context) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Provider) loop(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(p.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = p.refreshWith(ctx, true)
		}
	}
}

// refreshWith reads every migration and swaps in the new snapshot; emit says whether events
// go out (not during Init, where OpenFeature itself announces readiness).
func (p *Provider) refreshWith(ctx context.Context, emit bool) error {
	rctx, cancel := context.WithTimeout(ctx, p.cfg.timeout)
	migs, err := p.cat.Migrations(rctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil { // shutting down, not an outage
			return err
		}
		p.failed(ctx, err, emit)
		return err
	}
	next := &snapshot{migrations: make(map[string]snapEntry, len(migs)), at: time.Now()}
	for _, m := range migs {
		next.migrations[m.Name] = newSnapEntry(m)
	}
	prev := p.snap.Swap(next)
	wasStale := p.stale.Swap(false)
	if p.metrics != nil {
		p.metrics.lastSuccess.Set(float64(next.at.UnixNano()) / 1e9)
		p.metrics.stale.Set(0)
	}
	if wasStale {
		p.cfg.logger.Info("flags: catalog readable again; flag values are current",
			"provider", p.cfg.name, "outage", time.Since(p.outage).Round(time.Millisecond))
	}
	if !emit {
		return nil
	}
	if wasStale || prev == nil {
		p.emit(ctx, openfeature.Event{ProviderName: p.cfg.name, EventType: openfeature.ProviderReady,
			ProviderEventDetails: openfeature.ProviderEventDetails{Message: "catalog read"}})
	}
	if changed := changedKeys(prev, next); len(changed) > 0 {
		p.emit(ctx, openfeature.Event{ProviderName: p.cfg.name, EventType: openfeature.ProviderConfigChange,
			ProviderEventDetails: openfeature.ProviderEventDetails{Message: "migration flags changed", FlagChanges: changed}})
	}
	return nil
}

// failed notes a failed refresh: the first failure of an outage is logged and announced, the
// others only counted.
func (p *Provider) failed(ctx context.Context, err error, emit bool) {
	if p.metrics != nil {
		p.metrics.refreshErrors.Inc()
	}
	if p.snap.Load() == nil { // nothing loaded yet: nothing to keep in force
		return
	}
	if p.stale.Swap(true) {
		return
	}
	p.outage = time.Now()
	if p.metrics != nil {
		p.metrics.stale.Set(1)
	}
	p.cfg.logger.Warn("flags: catalog unreachable; keeping the last known flag values in force",
		"provider", p.cfg.name, "err", err)
	if emit {
		p.emit(ctx, openfeature.Event{ProviderName: p.cfg.name, EventType: openfeature.ProviderStale,
			ProviderEventDetails: openfeature.ProviderEventDetails{Message: "catalog unreachable: " + err.Error()}})
	}
}

// emit sends an event to OpenFeature. It waits rather than drops: a lost configuration-changed
// event would leave callers caching old values.
func (p *Provider) emit(ctx context.Context, ev openfeature.Event) {
	if !p.eventsWanted.Load() {
		return
	}
	select {
	case p.events <- ev:
	case <-ctx.Done():
	}
}

// changedKeys lists the flag keys whose values differ between two snapshots (every key of a
// migration that appeared or disappeared), sorted. A first snapshot changes nothing.
func changedKeys(prev, next *snapshot) []string {
	if prev == nil {
		return nil
	}
	var out []string
	diff := func(name string, a, b snapEntry, aok, bok bool) {
		for _, f := range Names {
			if !aok || !bok || a.values.get(f) != b.values.get(f) || (a.err == nil) != (b.err == nil) {
				out = append(out, name+"."+f)
			}
		}
	}
	for name, b := range next.migrations {
		a, ok := prev.migrations[name]
		diff(name, a, b, ok, true)
	}
	for name, a := range prev.migrations {
		if _, ok := next.migrations[name]; !ok {
			diff(name, a, snapEntry{}, true, false)
		}
	}
	slices.Sort(out)
	return out
}

// Snapshot returns a migration's flags as last read from the catalog, and whether the
// migration was in it. It reads no catalog.
func (p *Provider) Snapshot(migration string) (Values, bool) {
	s := p.snap.Load()
	if s == nil {
		return Values{}, false
	}
	e, ok := s.migrations[migration]
	if !ok || e.err != nil {
		return Values{}, false
	}
	return e.values, true
}

// Stale reports whether the last catalog read failed, so the values served are the last known.
func (p *Provider) Stale() bool { return p.stale.Load() }

// lookup resolves a flag key to the migration's values and the flag's name. A false ok with an
// empty ResolutionError means "use the caller's default" (an unknown migration).
func (p *Provider) lookup(key string) (Values, string, openfeature.ProviderResolutionDetail, bool) {
	var d openfeature.ProviderResolutionDetail
	i := strings.LastIndexByte(key, '.')
	if i <= 0 || !slices.Contains(Names, key[i+1:]) {
		d.Reason = openfeature.ErrorReason
		d.ResolutionError = openfeature.NewFlagNotFoundResolutionError(fmt.Sprintf(
			"flag %q: want MIGRATION.FLAG with FLAG one of %s", key, strings.Join(Names, ", ")))
		return Values{}, "", d, false
	}
	migration, flag := key[:i], key[i+1:]
	s := p.snap.Load()
	if s == nil {
		d.Reason = openfeature.ErrorReason
		d.ResolutionError = openfeature.NewProviderNotReadyResolutionError("the catalog has not been read yet")
		return Values{}, flag, d, false
	}
	e, ok := s.migrations[migration]
	if !ok {
		d.Reason = openfeature.DefaultReason
		return Values{}, flag, d, false
	}
	if e.err != nil {
		d.Reason = openfeature.ErrorReason
		d.ResolutionError = openfeature.NewGeneralResolutionError(e.err.Error())
		return Values{}, flag, d, false
	}
	d.Reason, d.FlagMetadata = openfeature.StaticReason, e.meta
	if p.stale.Load() {
		d.Reason, d.FlagMetadata = openfeature.CachedReason, e.stale
	}
	d.Variant = e.variants[slices.Index(Names, flag)]
	return e.values, flag, d, true
}

func typeMismatch(key, flag, want string) openfeature.ProviderResolutionDetail {
	return openfeature.ProviderResolutionDetail{
		Reason:          openfeature.ErrorReason,
		ResolutionError: openfeature.NewTypeMismatchResolutionError(fmt.Sprintf("flag %q: %s is not a %s", key, flag, want)),
	}
}

// StringEvaluation implements openfeature.FeatureProvider: phase and read_source.
func (p *Provider) StringEvaluation(_ context.Context, key string, def string, _ openfeature.FlattenedContext) openfeature.StringResolutionDetail {
	v, flag, d, ok := p.lookup(key)
	if !ok {
		return openfeature.StringResolutionDetail{Value: def, ProviderResolutionDetail: d}
	}
	switch flag {
	case FlagPhase:
		return openfeature.StringResolutionDetail{Value: v.Phase, ProviderResolutionDetail: d}
	case FlagReadSource:
		return openfeature.StringResolutionDetail{Value: v.ReadSource, ProviderResolutionDetail: d}
	}
	return openfeature.StringResolutionDetail{Value: def, ProviderResolutionDetail: typeMismatch(key, flag, "string")}
}

// FloatEvaluation implements openfeature.FeatureProvider: shadow_read_percent.
func (p *Provider) FloatEvaluation(_ context.Context, key string, def float64, _ openfeature.FlattenedContext) openfeature.FloatResolutionDetail {
	v, flag, d, ok := p.lookup(key)
	if !ok {
		return openfeature.FloatResolutionDetail{Value: def, ProviderResolutionDetail: d}
	}
	if flag == FlagShadowReadPercent {
		return openfeature.FloatResolutionDetail{Value: v.ShadowReadPercent, ProviderResolutionDetail: d}
	}
	return openfeature.FloatResolutionDetail{Value: def, ProviderResolutionDetail: typeMismatch(key, flag, "float")}
}

// BooleanEvaluation implements openfeature.FeatureProvider: write_block.
func (p *Provider) BooleanEvaluation(_ context.Context, key string, def bool, _ openfeature.FlattenedContext) openfeature.BoolResolutionDetail {
	v, flag, d, ok := p.lookup(key)
	if !ok {
		return openfeature.BoolResolutionDetail{Value: def, ProviderResolutionDetail: d}
	}
	if flag == FlagWriteBlock {
		return openfeature.BoolResolutionDetail{Value: v.WriteBlock, ProviderResolutionDetail: d}
	}
	return openfeature.BoolResolutionDetail{Value: def, ProviderResolutionDetail: typeMismatch(key, flag, "boolean")}
}

// IntEvaluation implements openfeature.FeatureProvider; no flag is an integer
// (shadow_read_percent is a float).
func (p *Provider) IntEvaluation(_ context.Context, key string, def int64, _ openfeature.FlattenedContext) openfeature.IntResolutionDetail {
	_, flag, d, ok := p.lookup(key)
	if !ok {
		return openfeature.IntResolutionDetail{Value: def, ProviderResolutionDetail: d}
	}
	return openfeature.IntResolutionDetail{Value: def, ProviderResolutionDetail: typeMismatch(key, flag, "integer")}
}

// ObjectEvaluation implements openfeature.FeatureProvider: any flag, as its typed value
// (string, float64 or bool).
func (p *Provider) ObjectEvaluation(_ context.Context, key string, def any, _ openfeature.FlattenedContext) openfeature.InterfaceResolutionDetail {
	v, flag, d, ok := p.lookup(key)
	if !ok {
		return openfeature.InterfaceResolutionDetail{Value: def, ProviderResolutionDetail: d}
	}
	var out any
	switch flag {
	case FlagPhase:
		out = v.Phase
	case FlagReadSource:
		out = v.ReadSource
	case FlagShadowReadPercent:
		out = v.ShadowReadPercent
	case FlagWriteBlock:
		out = v.WriteBlock
	}
	return openfeature.InterfaceResolutionDetail{Value: out, ProviderResolutionDetail: d}
}

var (
	_ openfeature.FeatureProvider          = (*Provider)(nil)
	_ openfeature.ContextAwareStateHandler = (*Provider)(nil)
	_ openfeature.EventHandler             = (*Provider)(nil)
)
