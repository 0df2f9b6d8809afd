package flags

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/open-feature/go-sdk/openfeature"
)

// Evaluation context attribute names (see Context).
const (
	AttrMigration  = "migration"
	AttrDatabase   = "database"
	AttrCollection = "collection"
	AttrApp        = "app"
	AttrTenant     = "tenant"
)

// Register binds provider to domain in OpenFeature's process-wide API, waits until it is ready
// (its first catalog read, for a Provider) and returns a client for the domain. Each proxy in a
// process uses its own domain, so each has its own provider instance.
func Register(ctx context.Context, domain string, provider openfeature.FeatureProvider) (*openfeature.Client, error) {
	if domain == "" {
		return nil, errors.New("flags: registering a provider: empty OpenFeature domain")
	}
	if provider == nil {
		return nil, fmt.Errorf("flags: registering a provider for domain %s: nil provider", domain)
	}
	if err := openfeature.SetNamedProviderWithContextAndWait(ctx, domain, provider); err != nil {
		return nil, fmt.Errorf("flags: registering provider %s for domain %s: %w", provider.Metadata().Name, domain, err)
	}
	return openfeature.NewClient(domain), nil
}

// Evaluator evaluates a migration's four flags through an OpenFeature client: the proxy's hot
// path. Evaluate costs four OpenFeature evaluations, so a caller should cache the Values per
// (connection, migration) and evaluate again only when Generation has moved: it increases on
// every PROVIDER_CONFIGURATION_CHANGED and PROVIDER_READY event of the client's provider, after
// the provider has taken in the new values. It is safe for concurrent use.
type Evaluator struct {
	client *openfeature.Client
	gen    atomic.Uint64
	cb     openfeature.EventCallback
	keys   sync.Map // migration → *[4]string, its flag keys in Names order
}

// NewEvaluator returns an evaluator over client and subscribes to its provider's events;
// Close unsubscribes.
func NewEvaluator(client *openfeature.Client) *Evaluator {
	e := &Evaluator{client: client}
	f := func(openfeature.EventDetails) { e.gen.Add(1) }
	e.cb = &f
	client.AddHandler(openfeature.ProviderConfigChange, e.cb)
	client.AddHandler(openfeature.ProviderReady, e.cb)
	return e
}

// Close stops following the provider's events; Generation stops moving.
func (e *Evaluator) Close() {
	e.client.RemoveHandler(openfeature.ProviderConfigChange, e.cb)
	e.client.RemoveHandler(openfeature.ProviderReady, e.cb)
}

// Generation counts the provider's configuration-changed and ready events. Values evaluated
// after reading a generation are current at least up to that generation.
func (e *Evaluator) Generation() uint64 { return e.gen.Load() }

// Evaluate returns the flags for c. The evaluation context carries migration, database,
// collection, app and tenant; the targeting key is the tenant, or the app when there is none.
// Each flag that fails to evaluate, or evaluates to a value the flag does not accept, falls back
// to its default (Defaults), and read_source is forced to old outside cutover and finalized, so
// a provider (a flagd file, say) cannot send reads to new before cutover. Revision comes from
// the phase evaluation's metadata when the provider gives one.
func (e *Evaluator) Evaluate(ctx context.Context, c Context) Values {
	v := Defaults()
	if c.Migration == "" {
		return v
	}
	keys := e.keysFor(c.Migration)
	target := c.Tenant
	if target == "" {
		target = c.App
	}
	ec := openfeature.NewEvaluationContext(target, map[string]any{
		AttrMigration: c.Migration, AttrDatabase: c.Database, AttrCollection: c.Collection,
		AttrApp: c.App, AttrTenant: c.Tenant,
	})
	if d, err := e.client.StringValueDetails(ctx, keys[0], v.Phase, ec); err == nil && phaseIndex(d.Value) >= 0 {
		v.Phase = d.Value
		if rev, err := d.FlagMetadata.GetInt("revision"); err == nil {
			v.Revision = rev
		}
	}
	if s, err := e.client.StringValue(ctx, keys[1], v.ReadSource, ec); err == nil && (s == ReadOld || s == ReadNew) {
		v.ReadSource = s
	}
	if f, err := e.client.FloatValue(ctx, keys[2], v.ShadowReadPercent, ec); err == nil && !math.IsNaN(f) && f >= 0 && f <= 100 {
		v.ShadowReadPercent = f
	}
	if b, err := e.client.BooleanValue(ctx, keys[3], v.WriteBlock, ec); err == nil {
		v.WriteBlock = b
	}
	if !readsNewAllowed(v.Phase) {
		v.ReadSource = ReadOld
	}
	return v
}

// keysFor returns a migration's flag keys, built once.
func (e *Evaluator) keysFor(migration string) *[4]string {
	if k, ok := e.keys.Load(migration); ok {
		return k.(*[4]string)
	}
	var k [4]string
	for i, name := range Names {
		k[i] = migration + "." + name
	}
	got, _ := e.keys.LoadOrStore(migration, &k)
	return got.(*[4]string)
}
