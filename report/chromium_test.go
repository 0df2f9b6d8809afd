package report_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/report"
	"github.com/tandemdb/tandem/testenv"
)

// TestHTMLRendersInChromium opens the HTML report (with a hostile value and values shown) in
// headless Chromium from a file: it must render with no console message, no exception and no
// network request, its script must work (the mismatch filter), and a screenshot is kept in
// .cache/artifacts/ (or $TANDEM_ARTIFACTS) for a person to look at.
func TestHTMLRendersInChromium(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, -1)
	f.seed(t, 10)
	f.corrupt(t)
	require.NoError(t, f.old.Upsert(ctx, append(user(6), bsonE("note", `</script><script>console.error("escaped?")</script>`))))
	f.verify(t)
	f.verify(t) // a second point on the drift chart
	// The report of the first, failing run: four mismatches and the hostile value.
	reports, err := f.cat.Reports(ctx, migration, catalog.ReportKindRelease, 0)
	require.NoError(t, err)
	require.Empty(t, reports)
	rep, err := f.svc.Generate(ctx, migration)
	require.NoError(t, err)

	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(page, []byte(render(t, rep, report.FormatHTML, true)), 0o600))

	b := testenv.StartBrowser(t, 1200, 900, 90*time.Second)
	tctx := b.Ctx
	require.NoError(t, chromedp.Do(tctx,
		chromedp.Navigate("file://"+page),
		chromedp.WaitVisible("#sign-off"),
	))
	title, err := chromedp.Run(tctx, chromedp.Title())
	require.NoError(t, err)
	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	// Type into the filter as a person would: the page's own script hides the other mismatches.
	visible, err := chromedp.Run(tctx, chromedp.Evaluate[int](`(() => {
		const box = document.getElementById("filter");
		box.value = "password";
		box.dispatchEvent(new Event("input"));
		return Array.from(document.querySelectorAll(".mismatch")).filter(e => e.style.display !== "none").length;
	})()`))
	require.NoError(t, err)
	assert.Equal(t, "Release report: users-v2 — FAIL", title)
	assert.Equal(t, 1, visible, "the inline script filters the mismatches")
	assert.Empty(t, b.Problems(), "no console message or exception")
	assert.Empty(t, b.RequestsOutside("file://"+page), "no request but the page itself")

	// The listeners do see what they look for: a page that logs and fetches is caught.
	control := filepath.Join(dir, "control.html")
	require.NoError(t, os.WriteFile(control, []byte(`<!DOCTYPE html><title>c</title><body><img src="http://127.0.0.1:9/x.png"><script>console.log("hi")</script>`), 0o600))
	b.Reset()
	require.NoError(t, chromedp.Do(tctx, chromedp.Navigate("file://"+control)))
	require.Eventually(t, func() bool {
		external := false
		for _, u := range b.Requests() {
			external = external || strings.HasPrefix(u, "http://127.0.0.1:9/")
		}
		return len(b.Problems()) > 0 && external
	}, 30*time.Second, 20*time.Millisecond, "the control page's console call and request are seen")

	testenv.Artifact(t, "..", "report.png", shot)
	require.Greater(t, len(shot), 10_000, "a screenshot of the page")
}
