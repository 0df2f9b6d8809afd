package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/migration"
)

// KindDeadLetters is the audit kind of a dead-letter retry (subject "retry"; From is how many
// were retried, To how many are still failing).
const KindDeadLetters = "dead_letters"

// DeadLetterRetryRequest is the body of POST /v1/migrations/{name}/dead-letters/retry: All
// retries every dead letter, not only those of older spec versions. Reason is required.
type DeadLetterRetryRequest struct {
	All    bool   `json:"all"`
	Reason string `json:"reason"`
}

// DeadLettersResponse is the answer to GET /v1/migrations/{name}/dead-letters: the unresolved
// dead letters, oldest first, without documents.
type DeadLettersResponse struct {
	DeadLetters []DeadLetterEntry `json:"dead_letters"`
}

// Dead-letter list limits: the default and the most one call returns.
const (
	DefaultDeadLetterLimit = 100
	MaxDeadLetterLimit     = 10000
)

// listDeadLetters answers GET /v1/migrations/{name}/dead-letters?direction=&limit=.
func (h *handler) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	if !h.backfillAvailable(w) {
		return
	}
	q := r.URL.Query()
	f := catalog.DeadLetterFilter{Direction: q.Get("direction"), Limit: DefaultDeadLetterLimit}
	if f.Direction != "" && f.Direction != catalog.DirectionForward && f.Direction != catalog.DirectionReverse {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("direction %q: want forward or reverse", f.Direction), nil)
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxDeadLetterLimit {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("limit %q: want a whole number from 1 to %d", s, MaxDeadLetterLimit), nil)
			return
		}
		f.Limit = int64(n)
	}
	name := r.PathValue("name")
	if _, err := h.flags.Get(r.Context(), name); err != nil {
		h.fail(w, r, err, nil)
		return
	}
	dls, err := h.backfill.DeadLetters(r.Context(), name, f)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	out := DeadLettersResponse{DeadLetters: make([]DeadLetterEntry, 0, len(dls))}
	for _, d := range dls {
		out.DeadLetters = append(out.DeadLetters, deadLetterEntry(d))
	}
	writeJSON(w, http.StatusOK, out)
}

func deadLetterEntry(d catalog.DeadLetter) DeadLetterEntry {
	return DeadLetterEntry{Key: d.KeyString, Direction: d.Direction, Step: d.Step, Reason: d.Reason, SpecVersion: d.SpecVersion,
		Attempts: d.Attempts, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen}
}

// DeadLetters lists a migration's unresolved dead letters, oldest first: direction "" for
// both, limit 0 for the server's default.
func (c *Client) DeadLetters(ctx context.Context, name, direction string, limit int) ([]DeadLetterEntry, error) {
	q := url.Values{}
	if direction != "" {
		q.Set("direction", direction)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out DeadLettersResponse
	err := c.do(ctx, http.MethodGet, name, "dead-letters", q, nil, &out)
	return out.DeadLetters, err
}

// retryDeadLetters converges the migration's dead letters again on this server's runner of
// it (migration.Runner.RetryDeadLetters) and records who asked and why.
func (h *handler) retryDeadLetters(w http.ResponseWriter, r *http.Request, c change) {
	var req DeadLetterRetryRequest
	if !decode(w, r, &req) {
		return
	}
	if !requireReason(w, "a dead-letter retry", req.Reason) {
		return
	}
	if h.retry == nil || h.backfill == nil {
		writeError(w, http.StatusNotImplemented, CodeBadRequest, "dead-letter retries are not available on this server (they run on a proxy started with --spec)", nil)
		return
	}
	res, err := h.retry(r.Context(), c.migration, req.All)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	what := "dead letters of older spec versions"
	if req.All {
		what = "every dead letter"
	}
	e := catalog.AuditEntry{Migration: c.migration, Kind: KindDeadLetters, Subject: "retry",
		From: strconv.Itoa(res.Retried), To: strconv.Itoa(res.StillFailing), Who: c.who,
		Why: fmt.Sprintf("%s (%s: %d resolved, %d still failing, %d reverse left for cutover)", req.Reason, what, res.Resolved, res.StillFailing, res.SkippedReverse)}
	if err := h.backfill.RecordAudit(r.Context(), e); err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Info("admin: dead letters retried", "migration", c.migration, "who", c.who, "why", req.Reason, "all", req.All,
		"retried", res.Retried, "resolved", res.Resolved, "still_failing", res.StillFailing, "skipped_reverse", res.SkippedReverse)
	writeJSON(w, http.StatusOK, res)
}

// RetryDeadLetters converges a migration's dead letters again (all: every one, not only those
// of older spec versions) on the server's runner of it.
func (c *Client) RetryDeadLetters(ctx context.Context, name string, all bool, reason string) (migration.DeadLetterRetry, error) {
	var out migration.DeadLetterRetry
	err := c.do(ctx, http.MethodPost, name, "dead-letters/retry", nil, DeadLetterRetryRequest{All: all, Reason: reason}, &out)
	return out, err
}
