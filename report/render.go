package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Formats a report renders in.
const (
	FormatJSON     = "json"
	FormatMarkdown = "md"
	FormatHTML     = "html"
)

// Formats lists every format.
var Formats = []string{FormatJSON, FormatMarkdown, FormatHTML}

// ErrUnknownFormat means a format that is none of Formats.
var ErrUnknownFormat = fmt.Errorf("unknown report format: want %s", strings.Join(Formats, ", "))

// Render writes r in format. The caller decides about values: pass r.WithoutValues() to leave
// them out.
func Render(w io.Writer, r Report, format string) error {
	switch format {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatMarkdown:
		return renderMarkdown(w, r)
	case FormatHTML:
		return renderHTML(w, r)
	}
	return fmt.Errorf("%q: %w", format, ErrUnknownFormat)
}

// Section titles, the same in Markdown and HTML.
const (
	titleVerdict  = "Verdict"
	titleSpec     = "Spec"
	titleAsOf     = "As of"
	titleCoverage = "Coverage"
	titleCounts   = "Counts by kind"
	titleDrift    = "Drift"
	titleTop      = "Top mismatches"
	titleNotCov   = "Not covered"
	titleHistory  = "Phase and flag history"
	titleGates    = "Gates"
	titleLags     = "Lags and dead letters"
	titleSignOff  = "Sign-off"
)

// Sections lists every section title, in order: what a rendering holds.
var Sections = []string{titleVerdict, titleSpec, titleAsOf, titleCoverage, titleCounts, titleDrift, titleTop,
	titleNotCov, titleHistory, titleGates, titleLags, titleSignOff}

// Helpers shared by the renderers.

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func stampPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return stamp(*t)
}

func countText(c Counts, kind string) string {
	if n, ok := c.ByKind(kind); ok {
		return fmt.Sprint(n)
	}
	return "not checked"
}

func coverageText(c Coverage) string {
	if c.Ratio == nil {
		return fmt.Sprintf("%d documents compared; documents in the store not recorded", c.Compared)
	}
	return fmt.Sprintf("%d of %d documents compared (%.2f%%)", c.Compared, *c.Total, *c.Ratio*100)
}

func positionText(p string) string {
	if p == "" {
		return "not recorded"
	}
	return p
}

func valueText(v *Value) string {
	if v == nil {
		return "—"
	}
	s := v.Type + " " + v.Hash
	if v.Value != nil {
		s += " = " + *v.Value
	}
	return s
}

func pendingText(p *int64) string {
	if p == nil {
		return "not tracked"
	}
	return fmt.Sprint(*p)
}
