package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/report"
	"github.com/tandemdb/tandem/transform"
)

// reportOptions are the flags of `tandem report`.
type reportOptions struct {
	admin         adminOptions
	format        string // json, md or html; default from --out's extension, else md
	out           string // default stdout
	includeValues bool
	id            string // re-render a stored report instead of generating one
}

func newReportCmd() *cobra.Command {
	var o reportOptions
	cmd := &cobra.Command{
		Use:   "report MIGRATION [--format json|md|html] [--out FILE] [--include-values] [--id REPORT_ID]",
		Short: "Generate (or render again) a migration's release report: the verdict against the mismatch budget and its evidence",
		Long: `Ask the proxy that runs MIGRATION (--admin) to generate its release report from the newest
verification and the catalog, store it (it prints the report's id), and write it as JSON, Markdown
or one self-contained HTML page. With --id REPORT_ID (or --id latest), the stored report is
rendered again instead, with the sign-offs recorded since. Document values are left out (paths,
types and hashes only) unless --include-values, which needs the admin token.

--output is about what is printed besides: with --out, the summary line (--output json: a JSON
object); without --out the report itself is printed, and --output json asks for --format json.

Exit status 0 only when the verdict is PASS; 1 on FAIL (the report is written all the same) or
when the admin API refuses or fails; 2 on a bad command line or an --out that cannot be written.`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	o.admin.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "", "json, md or html (default: from --out's extension, else md)")
	_ = cmd.RegisterFlagCompletionFunc("format", reportFormats)
	f.StringVarP(&o.out, "out", "o", "", "write the report to FILE instead of stdout")
	f.BoolVar(&o.includeValues, "include-values", false, "put document values in the report (needs the admin token)")
	f.StringVar(&o.id, "id", "", "render the stored report REPORT_ID (or latest) again instead of generating one")
	cmd.AddCommand(newReportSignCmd())
	return cmd
}

// resolveFormat checks --format, or takes the format from --out's extension.
func (o *reportOptions) resolveFormat() (string, error) {
	// Without --out the report is what the command prints, so --output json asks for it as
	// JSON; with --out, --output is about the summary line only.
	if o.admin.output.isJSON() && o.out == "" {
		if o.format != "" && o.format != report.FormatJSON {
			return "", usagef("--output json and --format %s contradict each other: without --out the report itself is printed; give --out FILE to write it as %s and print a JSON summary", o.format, o.format)
		}
		o.format = report.FormatJSON
	}
	if o.format != "" {
		for _, f := range report.Formats {
			if o.format == f {
				return f, nil
			}
		}
		return "", usagef("--format %q: want %s", o.format, strings.Join(report.Formats, ", "))
	}
	if o.out == "" {
		return report.FormatMarkdown, nil
	}
	switch strings.ToLower(filepath.Ext(o.out)) {
	case ".json":
		return report.FormatJSON, nil
	case ".md", ".markdown":
		return report.FormatMarkdown, nil
	case ".html", ".htm":
		return report.FormatHTML, nil
	}
	return "", usagef("--out %s: cannot tell the format from its extension: give --format %s", o.out, strings.Join(report.Formats, "|"))
}

func (o *reportOptions) run(cmd *cobra.Command, name string) error {
	format, err := o.resolveFormat()
	if err != nil {
		return err
	}
	if o.id != "" && strings.TrimSpace(o.id) == "" {
		return usagef("--id is empty: give a report id or %s", catalog.LatestReport)
	}
	// Generating stores a report, so it needs the token; so do values.
	c, err := o.admin.client(o.id == "" || o.includeValues)
	if err != nil {
		return err
	}
	out, finish, err := openOut(cmd.OutOrStdout(), o.out)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.admin.timeout)
	defer cancel()
	var rep report.Report
	if o.id == "" {
		rep, err = c.GenerateReport(ctx, name, o.includeValues)
	} else {
		rep, err = c.Report(ctx, name, o.id, o.includeValues)
	}
	if err != nil {
		finish(false)
		return o.admin.apiError(err)
	}
	if err := report.Render(out, rep, format); err != nil {
		finish(false)
		return fmt.Errorf("writing the report: %w", err)
	}
	if err := finish(true); err != nil {
		return err
	}
	if o.out != "" {
		stdout := cmd.OutOrStdout()
		sum := reportSummary{Migration: name, ID: rep.ID, Verdict: rep.Verdict.Result, Reasons: rep.Verdict.Reasons, Out: o.out, Format: format}
		if err := o.admin.print(stdout, sum, func() {
			fmt.Fprintf(stdout, "%s: report %s: %s, written to %s (%s)\n", name, rep.ID, colorsFor(cmd, stdout).state(rep.Verdict.Result), o.out, format)
		}); err != nil {
			return err
		}
	}
	if rep.Verdict.Result != report.Pass {
		return fmt.Errorf("%s: report %s: %s: %s", name, rep.ID, rep.Verdict.Result, strings.Join(rep.Verdict.Reasons, "; "))
	}
	return nil
}

// reportSummary is what `tandem report --out FILE --output json` prints: where the report went
// and its verdict.
type reportSummary struct {
	Migration string   `json:"migration"`
	ID        string   `json:"id"`
	Verdict   string   `json:"verdict"` // PASS or FAIL
	Reasons   []string `json:"reasons,omitempty"`
	Out       string   `json:"out"`
	Format    string   `json:"format"`
}

// openOut prepares writing to path (stdout when empty) before anything is asked of the API,
// so that an unwritable place fails first: the report goes to a temporary file beside path,
// which finish(true) renames over it and finish(false) removes, so that a failure never leaves
// half a report, nor destroys the file that was there.
func openOut(stdout io.Writer, path string) (io.Writer, func(ok bool) error, error) {
	if path == "" {
		return stdout, func(bool) error { return nil }, nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, nil, usagef("--out %s: is a directory", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, nil, usagef("--out %s: cannot write it: %v", path, unwrapPathError(err))
	}
	return f, func(ok bool) error {
		err := f.Close()
		if err == nil && ok {
			if err = os.Chmod(f.Name(), 0o644); err == nil {
				err = os.Rename(f.Name(), path)
			}
		}
		if err != nil || !ok {
			_ = os.Remove(f.Name())
		}
		if err != nil && ok {
			return fmt.Errorf("--out %s: writing it: %w", path, err)
		}
		return nil
	}, nil
}

// unwrapPathError drops the *PathError's repetition of the path.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func newReportSignCmd() *cobra.Command {
	var (
		o           adminOptions
		by, comment string
		id          string
	)
	cmd := &cobra.Command{
		Use:   "sign MIGRATION --by WHO --comment TEXT [--id REPORT_ID]",
		Short: "Sign off a stored release report (default: the newest) in the audit trail",
		Long: `Record in MIGRATION's audit trail that WHO signs off the release report REPORT_ID (default: the
newest), with a comment. Every later rendering of that report shows the sign-off; tandem history
lists it as a "signoff" change. Needs the admin token.`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case strings.TrimSpace(by) == "":
				return usagef("report sign needs --by WHO: the name recorded as signing")
			case strings.TrimSpace(comment) == "":
				return usagef("report sign needs --comment TEXT: it is recorded with the sign-off")
			case strings.TrimSpace(id) == "":
				return usagef("--id is empty: give a report id or %s", catalog.LatestReport)
			}
			return adminChange(&o, cmd, func(ctx context.Context, c *admin.Client) (report.Report, error) {
				return c.SignReport(ctx, args[0], id, by, comment)
			}, func(out io.Writer, r report.Report) {
				fmt.Fprintf(out, "%s: report %s (%s) signed off by %s\n", args[0], r.ID, r.Verdict.Result, strings.TrimSpace(by))
			})
		},
	}
	o.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&by, "by", "", "who signs off (required)")
	f.StringVar(&comment, "comment", "", "the sign-off's comment (required)")
	f.StringVar(&id, "id", catalog.LatestReport, "the report to sign off")
	return cmd
}

// reportService is the release-report service the admin API serves for this proxy's
// migrations: their specs (for the mismatch budget), the catalog and the cutover gates.
func (ms *migrationStack) reportService() *report.Service {
	src := report.CatalogSource{
		Catalog: ms.catalog,
		Spec: func(name string) (*transform.Spec, bool) {
			r, ok := ms.byName[name]
			if !ok {
				return nil, false
			}
			return r.Spec(), true
		},
		CheckGates: ms.manager.CheckGates,
	}
	return &report.Service{Source: src, Catalog: ms.catalog}
}
