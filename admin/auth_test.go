package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/flags"
)

// browser is an HTTP client that keeps no cookie jar and follows no redirect: the tests say
// which cookie each request carries.
var browser = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func send(t *testing.T, method, u string, cookie *http.Cookie, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := browser.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == admin.SessionCookie && c.Value != "" {
			return c
		}
	}
	return nil
}

func signIn(t *testing.T, base, tok string) (*http.Response, string) {
	t.Helper()
	return send(t, http.MethodPost, base+"/login", nil, strings.NewReader(url.Values{"token": {tok}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded")
}

// TestSignInAndSessions walks the dashboard's sign-in: the form, a wrong and a right token,
// what a session cookie may read and change (only with the dashboard's header, from its own
// origin), signing out, and the one-time link.
func TestSignInAndSessions(t *testing.T) {
	f := newFixture(t, token)
	h := admin.NewHandler(admin.Config{Flags: f.mgr, Token: token, BackfillCatalog: f.cat})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	base := srv.URL
	flagsURL := base + "/v1/migrations/" + migration + "/flags"
	phaseURL := base + "/v1/migrations/" + migration + "/phase"
	move := `{"to": "shadow", "reason": "from the dashboard"}`

	resp, body := send(t, http.MethodGet, base+"/", nil, nil)
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "the dashboard sends a stranger to sign in")
	assert.Equal(t, "/login", resp.Header.Get("Location"))
	resp, body = send(t, http.MethodGet, base+"/login", nil, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `<form method="post" action="/login"`)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")

	resp, body = signIn(t, base, "not-the-token")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, body, "not the admin token")
	assert.Nil(t, sessionCookie(t, resp))
	assert.NotContains(t, body, token)

	resp, _ = signIn(t, base, token)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	cookie := sessionCookie(t, resp)
	require.NotNil(t, cookie)
	assert.True(t, cookie.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, cookie.SameSite)
	assert.NotContains(t, cookie.Value, token)

	resp, body = send(t, http.MethodGet, base+"/v1/session", cookie, nil)
	var sess admin.SessionResponse
	require.NoError(t, json.Unmarshal([]byte(body), &sess))
	assert.Equal(t, admin.SessionResponse{SignedIn: true, CanRead: true, CanChange: true, TokenConfigured: true}, sess)
	resp, _ = send(t, http.MethodGet, flagsURL, cookie, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a session reads")
	resp, body = send(t, http.MethodGet, base+"/", cookie, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `<script src="/assets/app.js" defer></script>`)

	before := f.state(t)
	resp, body = send(t, http.MethodPost, phaseURL, cookie, strings.NewReader(move))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a cookie alone changes nothing (another site's form could send it): %s", body)
	resp, body = send(t, http.MethodPost, phaseURL, cookie, strings.NewReader(move), admin.DashboardHeader, "1", "Origin", "http://evil.example")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "nor from another origin: %s", body)
	assert.Equal(t, before, f.state(t))
	resp, body = send(t, http.MethodPost, phaseURL, cookie, strings.NewReader(move), admin.DashboardHeader, "1", "Origin", base, admin.UserHeader, "ada")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	hist, err := f.mgr.History(t.Context(), migration, 1)
	require.NoError(t, err)
	assert.Equal(t, "api:ada", hist[0].Who)
	assert.Equal(t, "from the dashboard", hist[0].Why)

	resp, _ = send(t, http.MethodPost, base+"/logout", cookie, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "signing out needs the header too")
	resp, _ = send(t, http.MethodPost, base+"/logout", cookie, nil, admin.DashboardHeader, "1")
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	resp, _ = send(t, http.MethodGet, flagsURL, cookie, nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the session is over")

	// The one-time link: it signs in once.
	link, err := h.LoginLink(base + "/")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(link, base+"/login?code="), link)
	resp, _ = send(t, http.MethodGet, link, nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	linked := sessionCookie(t, resp)
	require.NotNil(t, linked)
	resp, _ = send(t, http.MethodGet, flagsURL, linked, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = send(t, http.MethodGet, link, nil, nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a link works once")
	assert.Contains(t, body, "used or has expired")
	resp, _ = send(t, http.MethodGet, base+"/login?code=made-up", nil, nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// Sign-in from another site's form is refused.
	resp, _ = send(t, http.MethodPost, base+"/login", nil, strings.NewReader("token="+token), "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Nil(t, sessionCookie(t, resp))

	v, err := f.mgr.Get(t.Context(), migration)
	require.NoError(t, err)
	assert.Equal(t, flags.PhaseShadow, v.Phase)
}

// TestSignInGuessingIsSlowedDown: after a few wrong tokens in a row the server refuses to
// check more for a while, whatever the token.
func TestSignInGuessingIsSlowedDown(t *testing.T) {
	f := newFixture(t, token)
	srv := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, Token: token}))
	t.Cleanup(srv.Close)
	limited := false
	for i := 0; i < 20 && !limited; i++ {
		resp, _ := signIn(t, srv.URL, "guess")
		limited = resp.StatusCode == http.StatusTooManyRequests
	}
	require.True(t, limited, "20 wrong tokens in a row are slowed down")
	resp, body := signIn(t, srv.URL, token)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "even the right one waits: %s", body)
	assert.Nil(t, sessionCookie(t, resp))
	require.Eventually(t, func() bool {
		resp, _ := signIn(t, srv.URL, token)
		return resp.StatusCode == http.StatusSeeOther && sessionCookie(t, resp) != nil
	}, 10*time.Second, 200*time.Millisecond, "and gets in after a pause")
}

// TestDashboardWithoutATokenOrWithOpenReads: a server without a token has no sign-in and no
// one-time link; with reads open the dashboard shows read-only to anyone.
func TestDashboardWithoutATokenOrWithOpenReads(t *testing.T) {
	f := newFixture(t, "")
	h := admin.NewHandler(admin.Config{Flags: f.mgr, BackfillCatalog: f.cat})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, err := h.LoginLink(srv.URL)
	assert.ErrorContains(t, err, "no token")
	resp, body := signIn(t, srv.URL, "anything")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Contains(t, body, "--admin-token-file")
	resp, _ = send(t, http.MethodGet, srv.URL+"/", nil, nil)
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)

	open := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, Token: token, BackfillCatalog: f.cat, OpenReads: true}))
	t.Cleanup(open.Close)
	resp, body = send(t, http.MethodGet, open.URL+"/", nil, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "<title>tandem</title>")
	assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	_, body = send(t, http.MethodGet, open.URL+"/v1/session", nil, nil)
	var sess admin.SessionResponse
	require.NoError(t, json.Unmarshal([]byte(body), &sess))
	assert.Equal(t, admin.SessionResponse{CanRead: true, OpenReads: true, TokenConfigured: true}, sess, "reads, no changes")

	for path, typ := range map[string]string{"/assets/app.js": "text/javascript", "/assets/app.css": "text/css"} {
		resp, body := send(t, http.MethodGet, open.URL+path, nil, nil)
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, resp.Header.Get("Content-Type"), typ, path)
		assert.NotEmpty(t, body)
	}
	for _, path := range []string{"/assets/index.html", "/assets/login.html.tmpl", "/assets/nothing.js", "/assets/..%2fauth.go"} {
		resp, _ := send(t, http.MethodGet, open.URL+path, nil, nil)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
}
