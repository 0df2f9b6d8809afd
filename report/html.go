package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var htmlText string

// htmlTemplate renders the one self-contained page: styles, script and the drift chart are
// inline and nothing is fetched. html/template escapes every value for its context.
var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"stamp":    stamp,
	"stampPtr": stampPtr,
	"count":    countText,
	"coverage": coverageText,
	"position": positionText,
	"value":    valueText,
	"pending":  pendingText,
	"ok":       okText,
	"flags":    flagsText,
	"kinds":    func() []string { return Kinds },
	"deref":    func(s *string) string { return *s },
}).Parse(htmlText))

// htmlPage is what the template sees.
type htmlPage struct {
	R      Report
	T      map[string]string // section titles
	Chart  chart
	Signed bool
}

func renderHTML(w io.Writer, r Report) error {
	page := htmlPage{R: r, Chart: drawChart(r.Verification.Drift), Signed: len(r.SignOffs) > 0, T: map[string]string{
		"verdict": titleVerdict, "spec": titleSpec, "asof": titleAsOf, "coverage": titleCoverage, "counts": titleCounts,
		"drift": titleDrift, "top": titleTop, "notcov": titleNotCov, "history": titleHistory, "gates": titleGates,
		"lags": titleLags, "signoff": titleSignOff,
	}}
	if err := htmlTemplate.Execute(w, page); err != nil {
		return fmt.Errorf("rendering the HTML report: %w", err)
	}
	return nil
}

// chart is the drift chart, drawn here as SVG coordinates so the page needs no library.
type chart struct {
	Width, Height float64
	Left, Bottom  float64 // the plot area's lower-left corner
	Right, Top    float64
	Line          string // polyline points
	Dots          []dot
	YMax          int64
	From, To      string // the time axis' ends
}

type dot struct {
	X, Y  float64
	Label string
}

// drawChart places the drift points on a 640×220 canvas: time on x, confirmed mismatches on y.
func drawChart(points []DriftPoint) chart {
	c := chart{Width: 640, Height: 220, Left: 48, Bottom: 190, Right: 624, Top: 16}
	if len(points) == 0 {
		return c
	}
	first, last := points[0].At, points[len(points)-1].At
	for _, p := range points {
		c.YMax = max(c.YMax, p.Confirmed)
	}
	yMax := max(c.YMax, 1)
	span := last.Sub(first)
	var line []string
	for i, p := range points {
		x := (c.Left + c.Right) / 2
		if span > 0 {
			x = c.Left + (c.Right-c.Left)*float64(p.At.Sub(first))/float64(span)
		} else if len(points) > 1 {
			x = c.Left + (c.Right-c.Left)*float64(i)/float64(len(points)-1)
		}
		y := c.Bottom - (c.Bottom-c.Top)*float64(p.Confirmed)/float64(yMax)
		line = append(line, fmt.Sprintf("%.1f,%.1f", x, y))
		c.Dots = append(c.Dots, dot{X: x, Y: y, Label: fmt.Sprintf("%s: %d confirmed", stamp(p.At), p.Confirmed)})
	}
	c.Line = strings.Join(line, " ")
	c.From, c.To = first.UTC().Format(time.DateTime), last.UTC().Format(time.DateTime)
	return c
}
