package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
)

// The backfill endpoints read and change the control state that package backfill keeps in the
// catalog (backfill.Status, Pause, Resume, SetRate, SetBytesRate): every process running the
// migration's backfill, on any machine, obeys a change within one poll, and the backfill
// package audits each change (kind "backfill") with the caller and the reason.

// Unlimited is the text a RateRequest gives for a limit to remove: backfill.Unlimited in Go.
const Unlimited = "unlimited"

// Request bodies of the backfill endpoints.
type (
	// BackfillRequest is the body of POST /v1/migrations/{name}/backfill/pause and /resume.
	// Reason is required.
	BackfillRequest struct {
		Reason string `json:"reason"`
	}
	// RateRequest is the body of POST /v1/migrations/{name}/backfill/rate: a limit in documents
	// per second, in bytes per second (of the target's BSON), or both, for all the processes
	// together. Each is a JSON number more than 0, or the string "unlimited" to remove the
	// limit; a field left out keeps its limit. Reason is required.
	RateRequest struct {
		DocsPerSec  json.RawMessage `json:"docs_per_sec,omitempty"`
		BytesPerSec json.RawMessage `json:"bytes_per_sec,omitempty"`
		Reason      string          `json:"reason"`
	}
)

// getBackfill answers with the backfill's progress as the catalog has it, over every process.
func (h *handler) getBackfill(w http.ResponseWriter, r *http.Request) {
	if !h.backfillAvailable(w) {
		return
	}
	p, err := backfill.Status(r.Context(), h.backfill, r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *handler) pauseBackfill(w http.ResponseWriter, r *http.Request, c change) {
	h.pauseOrResume(w, r, c, "pause", backfill.Pause)
}

func (h *handler) resumeBackfill(w http.ResponseWriter, r *http.Request, c change) {
	h.pauseOrResume(w, r, c, "resume", backfill.Resume)
}

func (h *handler) pauseOrResume(w http.ResponseWriter, r *http.Request, c change, verb string,
	apply func(ctx context.Context, c *catalog.Catalog, migration, who, why string) error) {
	if !h.backfillAvailable(w) {
		return
	}
	var req BackfillRequest
	if !decode(w, r, &req) || !requireReason(w, "a backfill "+verb, req.Reason) {
		return
	}
	if err := apply(r.Context(), h.backfill, c.migration, c.who, req.Reason); err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Info("admin: backfill "+verb, "migration", c.migration, "who", c.who, "why", req.Reason)
	h.answerProgress(w, r, c, verb)
}

func (h *handler) rateBackfill(w http.ResponseWriter, r *http.Request, c change) {
	if !h.backfillAvailable(w) {
		return
	}
	var req RateRequest
	if !decode(w, r, &req) {
		return
	}
	if req.DocsPerSec == nil && req.BytesPerSec == nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, `give "docs_per_sec", "bytes_per_sec" or both: a number more than 0, or "unlimited"`, nil)
		return
	}
	// Both limits are checked before either is set; each set is its own audited change.
	var docs, byteRate float64
	var err error
	if req.DocsPerSec != nil {
		if docs, err = parseRate("docs_per_sec", req.DocsPerSec); err != nil {
			h.fail(w, r, err, nil)
			return
		}
	}
	if req.BytesPerSec != nil {
		if byteRate, err = parseRate("bytes_per_sec", req.BytesPerSec); err != nil {
			h.fail(w, r, err, nil)
			return
		}
	}
	if !requireReason(w, "a backfill rate change", req.Reason) {
		return
	}
	if docs != 0 {
		if err := backfill.SetRate(r.Context(), h.backfill, c.migration, docs, c.who, req.Reason); err != nil {
			h.fail(w, r, err, nil)
			return
		}
	}
	if byteRate != 0 {
		if err := backfill.SetBytesRate(r.Context(), h.backfill, c.migration, byteRate, c.who, req.Reason); err != nil {
			h.fail(w, r, err, nil)
			return
		}
	}
	h.log.Info("admin: backfill rate set", "migration", c.migration, "docs_per_sec", docs, "bytes_per_sec", byteRate, "who", c.who, "why", req.Reason)
	h.answerProgress(w, r, c, "rate")
}

// answerProgress answers a change with the backfill's progress after it. Reading it can fail
// after the change was made: the answer then says so.
func (h *handler) answerProgress(w http.ResponseWriter, r *http.Request, c change, verb string) {
	p, err := backfill.Status(r.Context(), h.backfill, c.migration)
	if err != nil {
		h.log.Error("admin: reading the backfill status after a change", "migration", c.migration, "change", verb, "err", err)
		writeError(w, http.StatusInternalServerError, CodeInternal,
			fmt.Sprintf("the backfill %s of %s was made, but reading its status failed: %v", verb, c.migration, err), nil)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *handler) backfillAvailable(w http.ResponseWriter) bool {
	if h.backfill == nil {
		writeError(w, http.StatusNotImplemented, CodeBadRequest, "backfill control is not available on this server (it runs on a proxy started with --spec)", nil)
		return false
	}
	return true
}

// requireReason refuses a change without a reason; on refusal it has answered the request.
func requireReason(w http.ResponseWriter, what, reason string) bool {
	if strings.TrimSpace(reason) == "" {
		writeError(w, http.StatusUnprocessableEntity, CodeReasonRequired, fmt.Sprintf(`%s needs a "reason": it is recorded in the audit trail`, what), nil)
		return false
	}
	return true
}

// parseRate reads one limit of a RateRequest: a number more than 0, or "unlimited"
// (backfill.Unlimited). The error wraps backfill.ErrInvalidRate and names the field.
func parseRate(field string, raw json.RawMessage) (float64, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, fmt.Errorf("%w: %s: %v", backfill.ErrInvalidRate, field, err)
	}
	switch x := v.(type) {
	case string:
		if x == Unlimited {
			return backfill.Unlimited, nil
		}
		return 0, fmt.Errorf("%w: %s %q: want a number more than 0, or %q to remove the limit", backfill.ErrInvalidRate, field, x, Unlimited)
	case float64:
		if !(x > 0) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("%w: %s must be more than 0 (got %s); send %q to remove the limit", backfill.ErrInvalidRate, field, raw, Unlimited)
		}
		return x, nil
	default:
		return 0, fmt.Errorf("%w: %s %s: want a number more than 0, or %q to remove the limit (leave the field out to keep it)", backfill.ErrInvalidRate, field, raw, Unlimited)
	}
}

// rateJSON is a limit as a RateRequest carries it; nil (the field left out) for 0.
func rateJSON(r float64) (json.RawMessage, error) {
	switch {
	case r == 0:
		return nil, nil
	case math.IsInf(r, 1):
		return json.RawMessage(strconv.Quote(Unlimited)), nil
	case math.IsNaN(r) || math.IsInf(r, -1):
		return nil, fmt.Errorf("%w: %v: want a number more than 0, or backfill.Unlimited", backfill.ErrInvalidRate, r)
	}
	return json.RawMessage(strconv.FormatFloat(r, 'g', -1, 64)), nil
}
