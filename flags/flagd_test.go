package flags_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/flags"
)

func TestFlagdFileProvider(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "flags.json")
	doc, err := flags.FlagdFile(map[string]flags.Values{
		"users-v2": {Phase: flags.PhaseDual, ReadSource: flags.ReadOld, ShadowReadPercent: 12.5, WriteBlock: true},
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, doc, 0o644))

	p, err := flags.NewFlagdProvider(path)
	require.NoError(t, err)
	domain := t.Name()
	regCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := flags.Register(regCtx, domain, p)
	require.NoError(t, err)
	t.Cleanup(func() { _ = openfeature.SetNamedProviderAndWait(domain, openfeature.NoopProvider{}) })
	e := flags.NewEvaluator(cl)
	defer e.Close()

	fc := flags.Context{Migration: "users-v2", Database: "app", Collection: "users", App: "billing"}
	assert.Equal(t, flags.Values{Phase: "dual", ReadSource: "old", ShadowReadPercent: 12.5, WriteBlock: true}, e.Evaluate(ctx, fc))
	phase, err := cl.StringValue(ctx, "users-v2.phase", "off", openfeature.EvaluationContext{})
	require.NoError(t, err)
	assert.Equal(t, "dual", phase)
	assert.Equal(t, flags.Defaults(), e.Evaluate(ctx, flags.Context{Migration: "orders"}), "flags not in the file: defaults")

	// A hand-written file cannot send reads to new before cutover, nor set an unknown phase.
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"flags": {
		"users-v2.phase": {"state": "ENABLED", "variants": {"a": "dual"}, "defaultVariant": "a"},
		"users-v2.read_source": {"state": "ENABLED", "variants": {"a": "new"}, "defaultVariant": "a"},
		"orders.phase": {"state": "ENABLED", "variants": {"a": "bogus"}, "defaultVariant": "a"},
		"orders.shadow_read_percent": {"state": "ENABLED", "variants": {"a": 250}, "defaultVariant": "a"}
	}}`), 0o644))
	p2, err := flags.NewFlagdProvider(bad)
	require.NoError(t, err)
	cl2, err := flags.Register(regCtx, domain+"-bad", p2)
	require.NoError(t, err)
	t.Cleanup(func() { _ = openfeature.SetNamedProviderAndWait(domain+"-bad", openfeature.NoopProvider{}) })
	e2 := flags.NewEvaluator(cl2)
	defer e2.Close()
	assert.Equal(t, flags.Values{Phase: "dual", ReadSource: "old"}, e2.Evaluate(ctx, fc), "read_source=new before cutover is ignored")
	assert.Equal(t, flags.Defaults(), e2.Evaluate(ctx, flags.Context{Migration: "orders"}), "out-of-range values fall back to defaults")

	for name, tc := range map[string]struct{ path, msg string }{
		"no path":  {"", "no flags file given"},
		"missing":  {filepath.Join(t.TempDir(), "nope.json"), "reading flags file"},
		"not json": {writeFile(t, "flags: yes"), "is not JSON"},
		"no flags": {writeFile(t, `{"flag": {}}`), `has no "flags" object`},
	} {
		_, err := flags.NewFlagdProvider(tc.path)
		assert.ErrorContains(t, err, tc.msg, name)
	}
	_, err = flags.FlagdFile(map[string]flags.Values{"users-v2": {Phase: "dual", ReadSource: "new"}})
	assert.ErrorContains(t, err, "read_source=new needs phase cutover")
	_, err = flags.FlagdFile(map[string]flags.Values{"users-v2": {Phase: "later", ReadSource: "old"}})
	assert.ErrorContains(t, err, `phase "later"`)
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.json")
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}
