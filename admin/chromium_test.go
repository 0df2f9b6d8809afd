package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
)

// page drives the dashboard in a browser.
type page struct {
	t *testing.T
	b *testenv.Browser
}

// text is the text of the element with id.
func (p page) text(id string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.b.Ctx, chromedp.Evaluate[string](`(document.getElementById(`+quoteJS(id)+`) || {textContent: ""}).textContent`))
	require.NoError(p.t, err)
	return s
}

// waitText waits until the element's text contains want.
func (p page) waitText(id, want string) {
	p.t.Helper()
	if !assert.Eventually(p.t, func() bool { return strings.Contains(p.text(id), want) }, 30*time.Second, 50*time.Millisecond) {
		p.t.Fatalf("#%s should show %q; it shows %q (console: %q)", id, want, p.text(id), p.b.Problems())
	}
}

// fill types into the form fields, then presses the form's button, as a person would.
func (p page) submit(form string, fields map[string]string) {
	p.t.Helper()
	var steps []chromedp.Action[chromedp.Void]
	for id, v := range fields {
		steps = append(steps, chromedp.Evaluate[chromedp.Void](`document.getElementById(`+quoteJS(id)+`).value = ""`), chromedp.SendKeys(chromedp.CSS("#"+id), v))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS("#"+form+" button[type=submit]")))
	require.NoError(p.t, chromedp.Do(p.b.Ctx, steps...))
}

// refused is Chromium's log entry for an answer with a refusing status.
func refused(status int) string {
	return fmt.Sprintf("browser log: error: Failed to load resource: the server responded with a status of %d (%s)", status, http.StatusText(status))
}

func quoteJS(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// TestDashboardInChromium opens the dashboard in headless Chromium with the one-time link,
// checks that it loads with no console message and no request to anywhere but the server,
// flips a flag and pauses the backfill through its forms and sees both on the page and in the
// catalog, and then, signed out on a server with reads open, sees a change refused. The
// screenshots are kept in .cache/artifacts (dashboard.png is the README's).
func TestDashboardInChromium(t *testing.T) {
	s := newScene(t, admin.Config{EventInterval: 300 * time.Millisecond})
	h := admin.NewHandler(admin.Config{Flags: s.mgr, Token: token, BackfillCatalog: s.cat, EventInterval: 300 * time.Millisecond, Logger: testLog()})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	b := testenv.StartBrowser(t, 1400, 1100, 3*time.Minute)
	p := page{t: t, b: b}
	ctx := context.Background()

	link, err := h.LoginLink(srv.URL)
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(b.Ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#backfill-body"))))
	p.waitText("phase", flags.PhaseShadow)
	p.waitText("live", "live")
	p.waitText("backfill-state", backfill.StateRunning)
	p.waitText("problems", "lost its history")
	p.waitText("gates", "verification")
	p.waitText("partitions", "waiting")
	p.waitText("streams", "history_lost")
	p.waitText("mismatches", "missing")
	p.waitText("deadletters", "profile is not a document")
	p.waitText("audit", "start shadowing")
	p.waitText("phase-to", flags.PhaseDual) // the next phase, as the server says
	title, err := chromedp.Run(b.Ctx, chromedp.Title())
	require.NoError(t, err)
	assert.Equal(t, "tandem", title)
	assert.Empty(t, b.Problems(), "the page loads with no console message, exception or browser log entry")
	shot, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	testenv.Artifact(t, "..", "dashboard.png", shot)
	assert.Greater(t, len(shot), 30_000, "a screenshot of the page")

	// A flag the phase does not allow is refused, with the server's reason on the page.
	p.submit("flag-form", map[string]string{"flag-value": "new", "flag-reason": "too early"})
	p.waitText("message", "Set read_source refused: bad flag value: read_source=new needs phase cutover")

	// Flip a flag with the session.
	require.NoError(t, chromedp.Do(b.Ctx, chromedp.SetValue(chromedp.CSS("#flag-name"), flags.FlagShadowReadPercent)))
	p.submit("flag-form", map[string]string{"flag-value": "25", "flag-reason": "sample a quarter"})
	p.waitText("message", "Set shadow_read_percent: done")
	p.waitText("flags", "25%")
	v, err := s.mgr.Get(ctx, migration)
	require.NoError(t, err)
	assert.Equal(t, 25.0, v.ShadowReadPercent, "the dashboard's change is in the catalog")
	hist, err := s.mgr.History(ctx, migration, 1)
	require.NoError(t, err)
	assert.Equal(t, "sample a quarter", hist[0].Why)
	p.waitText("audit", "sample a quarter")

	// A refused change says why and changes nothing.
	p.submit("rollback-form", map[string]string{"rollback-reason": "oops", "rollback-confirm": "not-the-name"})
	p.waitText("message", "Type the migration's name")
	v2, err := s.mgr.Get(ctx, migration)
	require.NoError(t, err)
	assert.Equal(t, v.Revision, v2.Revision, "an unconfirmed rollback is not sent")

	// Pause the backfill.
	p.submit("pause-form", map[string]string{"pause-reason": "the old store is busy"})
	p.waitText("backfill-state", backfill.StatePaused)
	prog, err := backfill.Status(ctx, s.cat, migration)
	require.NoError(t, err)
	assert.True(t, prog.Paused, "the pause is in the catalog")
	pausedShot, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	testenv.Artifact(t, "..", "dashboard-paused.png", pausedShot)

	// The refused flag's 422 is the only thing the browser logged since: Chromium logs every
	// answer of 400 or more as a failed resource.
	assert.Equal(t, []string{refused(422)}, b.Problems())
	assert.Empty(t, b.RequestsOutside(srv.URL+"/"), "no request to anywhere but the admin server")

	// Signed out, on a server with reads open: the page shows read-only and a change is
	// refused by the server even when the page is made to send it.
	openH := admin.NewHandler(admin.Config{Flags: s.mgr, Token: token, BackfillCatalog: s.cat, OpenReads: true})
	open := httptest.NewServer(openH)
	t.Cleanup(func() { openH.Close(); open.Close() })
	require.NoError(t, chromedp.Do(b.Ctx, chromedp.Navigate(open.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#backfill-body"))))
	p.waitText("session", "read-only")
	disabled, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](`document.querySelector("#flag-form button").disabled`))
	require.NoError(t, err)
	assert.True(t, disabled, "controls are off without the token")
	require.NoError(t, chromedp.Do(b.Ctx, chromedp.Evaluate[chromedp.Void](`for (const e of document.querySelectorAll("#flag-form input, #flag-form select, #flag-form button")) e.disabled = false`)))
	p.submit("flag-form", map[string]string{"flag-value": "50", "flag-reason": "no token"})
	p.waitText("message", "refused: missing or wrong bearer token")
	v3, err := s.mgr.Get(ctx, migration)
	require.NoError(t, err)
	assert.Equal(t, 25.0, v3.ShadowReadPercent, "the refused change changed nothing")
	assert.Equal(t, v.Revision, v3.Revision)
	assert.Equal(t, []string{refused(422), refused(401)}, b.Problems(), "the refusals, and no script error")
}
