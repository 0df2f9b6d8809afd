package report

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// renderMarkdown writes r as one Markdown document, a heading per section.
func renderMarkdown(w io.Writer, r Report) error {
	b := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	v := r.Verification

	p("# Release report: %s\n\n", md(r.Migration))
	p("Report `%s`, generated %s, schema version %d.", r.ID, stamp(r.GeneratedAt), r.SchemaVersion)
	if r.IncludesValues {
		p(" **This rendering includes document values.**")
	} else {
		p(" Document values are left out: paths, types and hashes only.")
	}
	p("\n\n## %s\n\n**%s** — %d confirmed mismatches, budget %d.\n\n", titleVerdict, r.Verdict.Result, r.Verdict.Confirmed, r.Verdict.Budget)
	for _, why := range r.Verdict.Reasons {
		p("- %s\n", md(why))
	}

	p("\n## %s\n\n| name | version | mismatch budget |\n|---|---|---|\n| %s | `%s` | %d |\n", titleSpec, cell(r.Spec.Name), r.Spec.Version, r.Spec.MismatchBudget)
	p("\n## %s\n\n- time: %s\n- position: %s\n- verification: %s, started %s, finished %s, complete: %t\n",
		titleAsOf, stampPtr(r.AsOf.Time), md(positionText(r.AsOf.Position)), md(v.Origin), stampPtr(v.Started), stampPtr(v.Finished), v.Complete)
	p("\n## %s\n\n%s.\n", titleCoverage, coverageText(r.Coverage))

	p("\n## %s\n\n| kind | confirmed |\n|---|---|\n", titleCounts)
	for _, k := range Kinds {
		p("| %s | %s |\n", k, countText(v.Counts, k))
	}
	p("| pending (not yet settled) | %s |\n", pendingText(v.Pending))

	p("\n## %s\n\n", titleDrift)
	if len(v.Drift) == 0 {
		p("No verification runs recorded.\n")
	} else {
		p("Confirmed mismatches per verification run: `%s`\n\n| at | confirmed |\n|---|---|\n", sparkline(v.Drift))
		for _, d := range v.Drift {
			p("| %s | %d |\n", stamp(d.At), d.Confirmed)
		}
	}

	p("\n## %s\n\n", titleTop)
	if len(v.Top) == 0 {
		p("None recorded.\n")
	}
	for _, m := range v.Top {
		p("### %s %s\n\n%s, found by %s at %s", m.Kind, md(m.Key), m.Kind, md(m.Source), stamp(m.FirstSeen))
		if m.RepairedAt != nil {
			p(", repaired at %s", stamp(*m.RepairedAt))
		}
		p(".\n\n| path | change | want | got | note |\n|---|---|---|---|---|\n")
		for _, f := range m.Fields {
			note := f.Note
			if f.Detail != nil {
				note = strings.TrimSpace(note + " " + *f.Detail)
			}
			p("| %s | %s | %s | %s | %s |\n", cell(f.Path), f.Change, cell(valueText(f.Want)), cell(valueText(f.Got)), cell(note))
		}
		p("\n")
	}

	p("\n## %s\n\n", titleNotCov)
	if len(v.NotCovered) == 0 {
		p("Nothing: the verification covered every check.\n")
	}
	for _, g := range v.NotCovered {
		block := ""
		if g.Blocking {
			block = " **(fails the verdict)**"
		}
		p("- %s: %s%s\n", md(g.What), md(g.Why), block)
	}

	p("\n## %s\n\nPhase now: **%s**; flags: %s.\n\n", titleHistory, md(r.Phase), md(flagsText(r.Flags)))
	if len(r.History) == 0 {
		p("No changes recorded.\n")
	} else {
		p("| at | who | change | from | to | why |\n|---|---|---|---|---|---|\n")
		for _, e := range r.History {
			p("| %s | %s | %s | %s | %s | %s |\n", stamp(e.At), cell(e.Who), cell(strings.TrimSpace(e.Kind+" "+e.Subject)), cell(e.From), cell(e.To), cell(e.Why))
		}
	}

	p("\n## %s\n\n| gate | result | detail |\n|---|---|---|\n", titleGates)
	for _, g := range r.Gates {
		p("| %s | %s | %s |\n", cell(g.Gate), okText(g.OK), cell(g.Detail))
	}

	p("\n## %s\n\nDead letters: %d forward, %d reverse.\n\n", titleLags, r.DeadLetters.Forward, r.DeadLetters.Reverse)
	if len(r.Lags) == 0 {
		p("No change-lag records.\n")
	} else {
		p("| component | process | lag | reported |\n|---|---|---|---|\n")
		for _, l := range r.Lags {
			p("| %s | %s | %d ms | %s |\n", cell(l.Component), cell(l.Owner), l.LagMillis, stamp(l.UpdatedAt))
		}
	}

	p("\n## %s\n\n", titleSignOff)
	if len(r.SignOffs) == 0 {
		p("Not signed off. Sign with `tandem report sign %s --id %s --by NAME --comment TEXT`.\n", r.Migration, r.ID)
	} else {
		p("| signed by | verdict signed | at | comment | recorded by |\n|---|---|---|---|---|\n")
		for _, s := range r.SignOffs {
			p("| %s | %s | %s | %s | %s |\n", cell(s.By), s.Verdict, stamp(s.At), cell(s.Comment), cell(s.RecordedBy))
		}
	}
	return b.Flush()
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAILED"
}

func flagsText(fl map[string]string) string {
	if len(fl) == 0 {
		return "none"
	}
	keys := sortedKeys(fl)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + fl[k]
	}
	return strings.Join(parts, ", ")
}

// mdEscaper escapes the characters Markdown would read as markup, and folds lines.
var mdEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "<", "&lt;", ">", "&gt;", "#", `\#`, "|", `\|`, "\n", " ", "\r", " ")

// md escapes text for Markdown prose.
func md(s string) string { return mdEscaper.Replace(s) }

// cell escapes text for a table cell; an empty cell shows a dash.
func cell(s string) string {
	if s == "" {
		return "—"
	}
	return md(s)
}

// sparkline draws the drift as block characters, one per point, scaled to the largest.
func sparkline(points []DriftPoint) string {
	const bars = "▁▂▃▄▅▆▇█"
	runes := []rune(bars)
	var peak int64
	for _, d := range points {
		peak = max(peak, d.Confirmed)
	}
	var b strings.Builder
	for _, d := range points {
		i := 0
		if peak > 0 {
			i = int(d.Confirmed * int64(len(runes)-1) / peak)
		}
		b.WriteRune(runes[i])
	}
	return b.String()
}
