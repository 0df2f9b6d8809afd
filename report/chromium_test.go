package report_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/report"
)

// chromiumPath finds Debian's chromium; under make test (TANDEM_REQUIRE_CHROMIUM=1) a missing
// one fails the test instead of skipping it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("TANDEM_REQUIRE_CHROMIUM") != "" {
		t.Fatal("chromium is not installed (make chromium installs Debian's package)")
	}
	t.Skip("chromium is not installed; set TANDEM_REQUIRE_CHROMIUM=1 to fail instead")
	return ""
}

// TestHTMLRendersInChromium opens the HTML report (with a hostile value and values shown) in
// headless Chromium from a file: it must render with no console message, no exception and no
// network request, its script must work (the mismatch filter), and a screenshot is kept in
// .cache/artifacts/ (or $TANDEM_ARTIFACTS) for a person to look at.
func TestHTMLRendersInChromium(t *testing.T) {
	browser := chromiumPath(t)
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

	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(filepath.Join(dir, "profile")))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	tctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()

	var mu sync.Mutex
	var problems, requests []string
	require.NoError(t, chromedp.Listen(tctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			problems = append(problems, "console."+string(e.Type))
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			problems = append(problems, "browser log: "+string(e.Entry.Level)+": "+e.Entry.Text)
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		}
	}))
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
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, problems, "no console message or exception")
	for _, u := range requests {
		assert.True(t, strings.HasPrefix(u, "file://"+page), "no request but the page itself: %s", u)
	}

	// The listeners do see what they look for: a page that logs and fetches is caught.
	control := filepath.Join(dir, "control.html")
	require.NoError(t, os.WriteFile(control, []byte(`<!DOCTYPE html><title>c</title><body><img src="http://127.0.0.1:9/x.png"><script>console.log("hi")</script>`), 0o600))
	problems, requests = nil, nil
	mu.Unlock()
	require.NoError(t, chromedp.Do(tctx, chromedp.Navigate("file://"+control)))
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		external := false
		for _, u := range requests {
			external = external || strings.HasPrefix(u, "http://127.0.0.1:9/")
		}
		return len(problems) > 0 && external
	}, 30*time.Second, 20*time.Millisecond, "the control page's console call and request are seen")
	mu.Lock()

	art := os.Getenv("TANDEM_ARTIFACTS") // default: .cache/artifacts of this repository
	if art == "" {
		art = filepath.Join("..", ".cache", "artifacts")
	}
	require.NoError(t, os.MkdirAll(art, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(art, "report.png"), shot, 0o644))
	require.Greater(t, len(shot), 10_000, "a screenshot of the page")
}
