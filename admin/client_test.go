package admin_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/flags"
)

func TestClientMirrorsTheEndpoints(t *testing.T) {
	f := newFixture(t, token, gateConfig)
	ctx := context.Background()
	c, err := admin.NewClient(f.url+"/", token, nil)
	require.NoError(t, err)
	c.User = "dana"

	v, err := c.Get(ctx, migration)
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseOff, v.Phase)

	v, err = c.Advance(ctx, migration, flags.PhaseShadow, "start")
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseShadow, v.Phase)
	v, err = c.Set(ctx, migration, map[string]string{flags.FlagShadowReadPercent: "12.5"}, "sample")
	require.NoError(t, err)
	assert.Equal(t, 12.5, v.ShadowReadPercent)
	_, err = c.Advance(ctx, migration, flags.PhaseDual, "dual")
	require.NoError(t, err)

	res, err := c.Cutover(ctx, migration, "")
	require.Error(t, err)
	assert.ErrorIs(t, err, flags.ErrGateFailed, "client errors unwrap to the flags sentinel")
	var e *admin.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusConflict, e.Status)
	assert.Equal(t, admin.CodeGateFailed, e.Code)
	assert.Len(t, res.Gates, 3, "the gates come back with the refusal")
	assert.NotEmpty(t, admin.FailedGates(res.Gates))

	f.passGates(t)
	res, err = c.Cutover(ctx, migration, "go")
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseCutover, res.Values.Phase)
	assert.Empty(t, admin.FailedGates(res.Gates))

	_, err = c.Rollback(ctx, migration, "", "")
	assert.ErrorIs(t, err, flags.ErrReasonRequired)
	v, err = c.Rollback(ctx, migration, flags.PhaseShadow, "back two")
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseShadow, v.Phase)

	h, err := c.History(ctx, migration, 2)
	require.NoError(t, err)
	require.Len(t, h, 2)
	assert.Equal(t, "api:dana", h[0].Who)
	assert.Equal(t, "back two", h[0].Why)

	_, err = c.Advance(ctx, migration, flags.PhaseFinalized, "skip")
	assert.ErrorIs(t, err, flags.ErrPhaseStep)
	_, err = c.Set(ctx, migration, map[string]string{"colour": "red"}, "")
	assert.ErrorIs(t, err, flags.ErrUnknownFlag)
	_, err = c.Get(ctx, "nobody")
	assert.ErrorIs(t, err, flags.ErrNotFound)

	wrong, err := admin.NewClient(f.url, "wrong", nil)
	require.NoError(t, err)
	before := f.state(t)
	_, err = wrong.Set(ctx, migration, map[string]string{flags.FlagWriteBlock: "true"}, "r")
	assert.ErrorIs(t, err, admin.ErrUnauthorized)
	assert.Equal(t, before, f.state(t))
}

func TestClientEscapesMigrationNames(t *testing.T) {
	f := newFixture(t, token)
	name := "team a/users?v=2#x"
	_, err := f.cat.RegisterSpec(context.Background(), name, "v1", "name: x", "test")
	require.NoError(t, err)
	c, err := admin.NewClient(f.url, token, nil)
	require.NoError(t, err)
	v, err := c.Advance(context.Background(), name, flags.PhaseShadow, "r")
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseShadow, v.Phase)
	got, err := f.mgr.Get(context.Background(), name)
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseShadow, got.Phase)
	other, err := f.mgr.Get(context.Background(), migration)
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseOff, other.Phase, "only the named migration moved")
}

func TestClientReportsAnswersThatAreNotTheAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/migrations/m/flags" {
			_, _ = w.Write([]byte("<html>hello</html>"))
			return
		}
		http.Error(w, "404 page not found", http.StatusNotFound)
	}))
	defer srv.Close()
	c, err := admin.NewClient(srv.URL, "", nil)
	require.NoError(t, err)
	_, err = c.History(context.Background(), "m", 0)
	var e *admin.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusNotFound, e.Status)
	assert.Empty(t, e.Code)
	assert.Contains(t, err.Error(), "404 page not found")
	_, err = c.Get(context.Background(), "m")
	require.Error(t, err)
	assert.False(t, errors.As(err, &e))
	assert.Contains(t, err.Error(), "something other than its JSON")
}

func TestNewClientChecksTheURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:9090", "ftp://h", "http://", "http://h/?q=1", "http://u:p@h/", "http://h/#f"} {
		_, err := admin.NewClient(u, "", nil)
		assert.Error(t, err, "%q", u)
	}
	for _, u := range []string{"http://127.0.0.1:9090", "https://tandem.internal/admin/"} {
		_, err := admin.NewClient(u, "", nil)
		assert.NoError(t, err, "%q", u)
	}
}
