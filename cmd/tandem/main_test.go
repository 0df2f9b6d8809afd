package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/embedmongo"
)

// syncBuffer is a bytes.Buffer safe for the command's goroutine and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBadFlagsAreRejectedWithAReason(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"proxy"}, "--upstream is required"},
		{[]string{"proxy", "--upstream", "http://127.0.0.1:1/"}, "want a mongodb://"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--listen", "nowhere"}, "--listen \"nowhere\": want host:port"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--admin", "9090"}, "--admin \"9090\""},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--tls-cert", "c.pem"}, "--tls-cert and --tls-key must be given together"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--max-conns", "-1"}, "--max-conns -1"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--idle-timeout", "-1s"}, "--idle-timeout -1s"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--upstream-dial-timeout", "0s"}, "--upstream-dial-timeout 0s"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--listen", "127.0.0.1:0", "--admin", "", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"}, "/nonexistent/c.pem"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/?loadBalanced=true", "--listen", "127.0.0.1:0", "--admin", ""}, "loadBalanced=true is not supported"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"proxy", "--upstream", "mongodb://127.0.0.1:1/", "--max-conns", "many"}, "invalid argument \"many\""},
		{[]string{"--log-level", "loud", "proxy", "--upstream", "mongodb://127.0.0.1:1/"}, "--log-level \"loud\""},
		{[]string{"--log-format", "xml", "demo"}, "--log-format \"xml\""},
		{[]string{"demo", "--seed", "-3"}, "--seed -3"},
		{[]string{"demo", "--data", ""}, "--data must name a folder"},
		{[]string{"run", "--upstream", "mongodb://127.0.0.1:1/", "--spec", "x.yaml", "--cdc-apply", "workers"}, "--cdc-apply \"workers\": want tailer or journal"},
		{[]string{"run", "--upstream", "mongodb://127.0.0.1:1/", "--spec", "x.yaml", "--cdc", "off", "--cdc-apply", "journal"}, "--cdc-apply journal: change capture is off"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut syncBuffer
			cmd := newRootCmd(&out, &errOut)
			cmd.SetArgs(tt.args)
			err := cmd.ExecuteContext(context.Background())
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			var ue usageError
			assert.True(t, errors.As(err, &ue), "a bad flag is a usage error (exit status 2): %v", err)
			assert.NotContains(t, out.String(), "mongodb://", "nothing started")
		})
	}
}

var uriRE = regexp.MustCompile(`mongodb://[0-9.:]+/`)
var adminRE = regexp.MustCompile(`http://[0-9.:]+`)

// runCommand runs tandem with args until the returned stop function is called; it waits for
// the printed connection string and returns it with the admin URL.
func runCommand(t *testing.T, args ...string) (proxyURI, adminURL string, out *syncBuffer, stop func() error) {
	t.Helper()
	return runCommandLogs(t, io.Discard, args...)
}

// runCommandLogs is runCommand with tandem's logs (its stderr) written to logs.
func runCommandLogs(t *testing.T, logs io.Writer, args ...string) (proxyURI, adminURL string, out *syncBuffer, stop func() error) {
	t.Helper()
	out = &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd(out, logs)
	cmd.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("tandem did not stop within 30s of its context ending")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("tandem %v exited early: %v\n%s", args, err, out.String())
		default:
		}
		return uriRE.MatchString(out.String()) && adminRE.MatchString(out.String())
	}, 60*time.Second, 20*time.Millisecond, "tandem printed no connection string")
	return uriRE.FindString(out.String()), adminRE.FindString(out.String()), out, stop
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	return httpGetWithToken(t, url, "")
}

// httpGetWithToken is httpGet with "Authorization: Bearer token" (none when token is "").
func httpGetWithToken(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestProxyCommandServesMetricsAndHealth(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{})
	require.NoError(t, err)
	t.Cleanup(store.Stop)

	uri, admin, _, stop := runCommand(t, "proxy", "--upstream", store.URI(), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	defer client.Disconnect(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = client.Database("cmdtest").Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		code, body := httpGet(t, admin+"/healthz")
		return code == http.StatusOK && strings.HasPrefix(body, "ok")
	}, 10*time.Second, 50*time.Millisecond)
	code, body := httpGet(t, admin+"/metrics")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `tandem_proxy_requests_total{command="insert"} 1`)
	assert.Contains(t, body, `tandem_proxy_open_connections`)
	assert.Contains(t, body, `tandem_proxy_request_duration_seconds_bucket{command="insert"`)
	assert.Contains(t, body, `go_goroutines`)

	require.NoError(t, client.Disconnect(context.Background()))
	require.NoError(t, stop(), "a signal stops the proxy cleanly")
}

func TestHealthzReportsAnUnreachableUpstream(t *testing.T) {
	_, admin, _, stop := runCommand(t, "proxy", "--upstream", "mongodb://127.0.0.1:1/", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	code, body := httpGet(t, admin+"/healthz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "127.0.0.1:1")
	require.NoError(t, stop())
}

// TestDemoSeedsAndStopsCleanly runs the demo twice on one data folder: the second run keeps
// the users and the phase of the first, and its banner says the phase it is really in; the
// README's validate --sample runs against the demo's store.
func TestDemoSeedsAndStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	for run, phase := range []string{"shadow", "dual"} {
		uri, adminURL, out, stop := runCommand(t, "demo", "--seed", "25", "--data", dir, "--listen", "127.0.0.1:0", "--store-listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
		assert.Contains(t, out.String(), "applications connect to")
		assert.Contains(t, out.String(), "embedded store (direct)")
		assert.Contains(t, out.String(), "users-v2 (demo.users → demo.users_v2) in phase "+phase+".", "run %d", run)
		assert.NotEmpty(t, adminURL)

		client, err := mongo.Connect(options.Client().ApplyURI(uri))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		n, err := client.Database("demo").Collection("users").CountDocuments(ctx, bson.D{})
		cancel()
		require.NoError(t, err)
		assert.Equal(t, int64(25), n, "run %d: seeding twice keeps 25 users", run)
		// The demo runs users-v2 in phase shadow: what went through the proxy is in users_v2.
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n, err := client.Database("demo").Collection("users_v2").CountDocuments(ctx, bson.D{{Key: "schema_version", Value: 2}})
			return err == nil && n == 25
		}, 30*time.Second, 100*time.Millisecond, "run %d: demo.users_v2 holds the 25 transformed users", run)
		code, _ := httpGet(t, adminURL+"/v1/migrations/users-v2/flags")
		assert.Equal(t, http.StatusUnauthorized, code, "reads need the token")
		tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
		require.NoError(t, err)
		api, err := admin.NewClient(adminURL, strings.TrimSpace(string(tok)), nil)
		require.NoError(t, err)
		v, err := api.Get(context.Background(), "users-v2")
		require.NoError(t, err)
		assert.Equal(t, phase, v.Phase)
		// The banner opens onto the dashboard: its one-time link signs a browser in, once.
		link := loginLinkRE.FindStringSubmatch(out.String())
		require.Len(t, link, 2, "the banner has the dashboard's sign-in link:\n%s", out.String())
		assertLoginLinkWorksOnce(t, link[1])

		// The README's round-trip check, against the demo's store.
		direct := directRE.FindStringSubmatch(out.String())
		require.Len(t, direct, 2, "the banner names the direct store:\n%s", out.String())
		vout, err := runTandem(t, "validate", "../../examples/users-v2.yaml", "--sample", "20", "--source-uri", direct[1], "--target-uri", direct[1])
		require.NoError(t, err, vout)
		assert.Contains(t, vout, "sampled 20 document(s) from mongodb demo.users: 20 round-trip exactly")

		if run == 0 {
			_, err = api.Advance(context.Background(), "users-v2", "dual", "the next run must say dual")
			require.NoError(t, err)
		}
		require.NoError(t, client.Disconnect(context.Background()))
		require.NoError(t, stop())
	}
}

var (
	directRE    = regexp.MustCompile(`embedded store \(direct\)\s+(mongodb://[0-9.:]+/)`)
	loginLinkRE = regexp.MustCompile(`open the dashboard\s+(http://[0-9.:]+/login\?code=[A-Za-z0-9_-]+)`)
)

// assertLoginLinkWorksOnce opens a one-time sign-in link twice: the first visit gets a
// session cookie and the dashboard, which then opens with it; the second is refused.
func assertLoginLinkWorksOnce(t *testing.T, link string) {
	t.Helper()
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(link)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	assert.Equal(t, "/", res.Header.Get("Location"))
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == admin.SessionCookie {
			session = c
		}
	}
	require.NotNil(t, session, "the link sets the session cookie")
	assert.True(t, session.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, session.SameSite)

	base := strings.SplitN(link, "/login", 2)[0]
	req, err := http.NewRequest(http.MethodGet, base+"/", nil)
	require.NoError(t, err)
	req.AddCookie(session)
	page, err := noFollow.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(page.Body)
	_ = page.Body.Close()
	assert.Equal(t, http.StatusOK, page.StatusCode, "the session opens the dashboard")
	assert.Contains(t, string(body), `<script src="/assets/app.js"`)

	again, err := noFollow.Get(link)
	require.NoError(t, err)
	_ = again.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, again.StatusCode, "the link works once")
}
