package testenv

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
)

// ChromiumPath finds Debian's chromium; under make test (TANDEM_REQUIRE_CHROMIUM=1) a missing
// one fails the test instead of skipping it.
func ChromiumPath(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("TANDEM_REQUIRE_CHROMIUM") != "" {
		tb.Fatal("chromium is not installed (make chromium installs Debian's package)")
	}
	tb.Skip("chromium is not installed; set TANDEM_REQUIRE_CHROMIUM=1 to fail instead")
	return ""
}

// Browser is a headless Chromium for a test, with what its pages did that a test asserts on:
// console messages, exceptions and browser log entries (Problems), and every request
// (Requests).
type Browser struct {
	Ctx context.Context // the tab: pass it to chromedp.Do and chromedp.Run

	mu       sync.Mutex
	problems []string
	requests []string
}

// StartBrowser starts headless Chromium (ChromiumPath) with a profile of the test's own, a
// window of width × height, and a bound of timeout on everything done in it; it is stopped
// when the test ends.
func StartBrowser(tb testing.TB, width, height int, timeout time.Duration) *Browser {
	tb.Helper()
	path := ChromiumPath(tb)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(width, height),
		chromedp.UserDataDir(filepath.Join(tb.TempDir(), "profile")))...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	tctx, cancel := context.WithTimeout(bctx, timeout)
	tb.Cleanup(func() { cancel(); cancelBrowser(); cancelAlloc() })
	b := &Browser{Ctx: tctx}
	if err := chromedp.Listen(tctx, b.record); err != nil {
		tb.Fatalf("starting chromium: %v", err)
	}
	return b
}

func (b *Browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		b.problems = append(b.problems, "console."+string(e.Type))
	case *runtime.EventExceptionThrown:
		b.problems = append(b.problems, "exception: "+e.ExceptionDetails.Text)
	case *cdplog.EventEntryAdded:
		b.problems = append(b.problems, "browser log: "+string(e.Entry.Level)+": "+e.Entry.Text)
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, e.Request.URL)
	}
}

// Problems returns the console messages, exceptions and browser log entries seen so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// Requests returns the URLs of every request the pages made so far.
func (b *Browser) Requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...)
}

// Reset forgets what was seen so far.
func (b *Browser) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems, b.requests = nil, nil
}

// RequestsOutside returns the requests whose URL does not start with prefix.
func (b *Browser) RequestsOutside(prefix string) []string {
	var out []string
	for _, u := range b.Requests() {
		if !strings.HasPrefix(u, prefix) {
			out = append(out, u)
		}
	}
	return out
}

// Artifact writes a file a person may look at after the test (a screenshot) to
// $TANDEM_ARTIFACTS, or to .cache/artifacts of the repository (repoRoot relative to the
// test's package, e.g. ".."), and returns its path.
func Artifact(tb testing.TB, repoRoot, name string, data []byte) string {
	tb.Helper()
	dir := os.Getenv("TANDEM_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot, ".cache", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("artifact %s: %v", name, err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		tb.Fatalf("artifact %s: %v", name, err)
	}
	return p
}
