package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tandemdb/tandem/report"
)

// The report endpoints generate, read and sign a migration's release reports (package
// report). A report is stored with the document values its mismatches show; the API hands
// them out only to a caller who may make changes (the token, or a dashboard session from its
// own page), even where reads are open to anyone (Config.OpenReads).

// Reports is what the handler needs of a *report.Service.
type Reports interface {
	Generate(ctx context.Context, name string) (report.Report, error)
	Load(ctx context.Context, name, id string) (report.Report, error)
	Sign(ctx context.Context, name, id, by, comment, recorder string) (report.Report, error)
}

var _ Reports = (*report.Service)(nil)

// Request bodies of the report endpoints.
type (
	// ReportRequest is the body of POST /v1/migrations/{name}/reports; it may be empty.
	ReportRequest struct {
		IncludeValues bool `json:"include_values"`
	}
	// SignOffRequest is the body of POST /v1/migrations/{name}/reports/{id}/signoffs. Both
	// fields are required.
	SignOffRequest struct {
		By      string `json:"by"`
		Comment string `json:"comment"`
	}
)

// generateReport generates and stores a report. It writes the catalog, so it needs the token.
func (h *handler) generateReport(w http.ResponseWriter, r *http.Request, c change) {
	var req ReportRequest
	if !decode(w, r, &req) || !h.reportsAvailable(w) {
		return
	}
	rep, err := h.reports.Generate(r.Context(), c.migration)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Info("admin: release report generated", "migration", c.migration, "who", c.who, "id", rep.ID, "verdict", rep.Verdict.Result)
	writeJSON(w, http.StatusOK, shown(rep, req.IncludeValues))
}

// getReport answers with a stored report; ?include_values=true needs the token.
func (h *handler) getReport(w http.ResponseWriter, r *http.Request) {
	withValues := false
	if s := r.URL.Query().Get("include_values"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "include_values "+strconv.Quote(s)+": want true or false", nil)
			return
		}
		withValues = b
	}
	if withValues {
		h.write(func(w http.ResponseWriter, r *http.Request, _ change) { h.answerReport(w, r, true) })(w, r)
		return
	}
	h.answerReport(w, r, false)
}

func (h *handler) answerReport(w http.ResponseWriter, r *http.Request, withValues bool) {
	if !h.reportsAvailable(w) {
		return
	}
	rep, err := h.reports.Load(r.Context(), r.PathValue("name"), r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, shown(rep, withValues))
}

// signReport records a sign-off of a stored report and answers with the report.
func (h *handler) signReport(w http.ResponseWriter, r *http.Request, c change) {
	var req SignOffRequest
	if !decode(w, r, &req) || !h.reportsAvailable(w) {
		return
	}
	rep, err := h.reports.Sign(r.Context(), c.migration, r.PathValue("id"), req.By, req.Comment, c.who)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Info("admin: release report signed", "migration", c.migration, "who", c.who, "id", rep.ID, "by", req.By)
	writeJSON(w, http.StatusOK, shown(rep, false))
}

func (h *handler) reportsAvailable(w http.ResponseWriter) bool {
	if h.reports == nil {
		writeError(w, http.StatusNotImplemented, CodeBadRequest, "release reports are not available on this server (they run on a proxy started with --spec)", nil)
		return false
	}
	return true
}

// shown is rep as an answer gives it: values only when asked.
func shown(rep report.Report, withValues bool) report.Report {
	if withValues {
		return rep
	}
	return rep.WithoutValues()
}

// GenerateReport generates and stores a release report of a migration (the token required)
// and returns it, with document values when includeValues is set.
func (c *Client) GenerateReport(ctx context.Context, migration string, includeValues bool) (report.Report, error) {
	var out report.Report
	err := c.do(ctx, http.MethodPost, migration, "reports", nil, ReportRequest{IncludeValues: includeValues}, &out)
	return out, err
}

// Report returns a stored release report by id ("latest": the newest); includeValues needs
// the token.
func (c *Client) Report(ctx context.Context, migration, id string, includeValues bool) (report.Report, error) {
	var q url.Values
	if includeValues {
		q = url.Values{"include_values": {"true"}}
	}
	var out report.Report
	err := c.do(ctx, http.MethodGet, migration, "reports/"+url.PathEscape(id), q, nil, &out)
	return out, err
}

// SignReport records a sign-off of a stored release report ("latest": the newest) and
// returns the report with its sign-offs.
func (c *Client) SignReport(ctx context.Context, migration, id, by, comment string) (report.Report, error) {
	var out report.Report
	err := c.do(ctx, http.MethodPost, migration, "reports/"+url.PathEscape(id)+"/signoffs", nil, SignOffRequest{By: by, Comment: comment}, &out)
	return out, err
}
