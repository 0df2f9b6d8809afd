package admin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/report"
)

// Error codes, the "code" field of an error answer.
const (
	CodeUnknownFlag    = "unknown_flag"    // 422: no such flag
	CodeBadValue       = "bad_value"       // 422: a value the flag does not take
	CodePhaseStep      = "phase_step"      // 409: the move skips a phase or goes the wrong way
	CodeGateFailed     = "gate_failed"     // 409: a cutover gate failed; "gates" says which
	CodeNotFound       = "not_found"       // 404: no such migration (or endpoint)
	CodeConflict       = "conflict"        // 409: someone else changed the flags first; read and retry
	CodeReasonRequired = "reason_required" // 422: the change needs a reason
	CodeUnauthorized   = "unauthorized"    // 401: bad or missing token; 403: no token configured
	CodeBadRequest     = "bad_request"     // 400, 405, 413, 415: the request itself is malformed
	CodeInternal       = "internal"        // 500: the server could not do it (the catalog is down, say)

	CodeBackfillNotStarted = "backfill_not_started" // 404: the migration has no backfill plan
	CodeBackfillFinished   = "backfill_finished"    // 409: every partition is copied: nothing to pause
	CodeBackfillPaused     = "backfill_paused"      // 409: a pause of a paused backfill
	CodeBackfillNotPaused  = "backfill_not_paused"  // 409: a resume of a backfill that is not paused
	CodeBadRate            = "bad_rate"             // 422: a backfill limit of 0 or less, or not a number; the message names the field

	CodeReportNotFound = "report_not_found" // 404: the migration has no stored release report with that id
	CodeBadSignOff     = "bad_signoff"      // 422: a sign-off without a signer or a comment
)

// Sentinel errors for the codes that have no flags, backfill or catalog error of their own; a
// client *Error wraps these, or the flags or backfill package's, so errors.Is works on both
// sides of the wire.
var (
	// ErrUnauthorized means the server refused the credentials, or has no token configured.
	ErrUnauthorized = errors.New("admin API refused the credentials")
	// ErrBadRequest means the server found the request malformed.
	ErrBadRequest = errors.New("admin API found the request malformed")
	// ErrInternal means the server failed to carry out a well-formed request.
	ErrInternal = errors.New("admin API failed internally")
)

// codes maps each code to the HTTP status the handler answers with and the sentinel a client
// error unwraps to.
var codes = map[string]struct {
	status   int
	sentinel error
}{
	CodeUnknownFlag:    {http.StatusUnprocessableEntity, flags.ErrUnknownFlag},
	CodeBadValue:       {http.StatusUnprocessableEntity, flags.ErrBadValue},
	CodePhaseStep:      {http.StatusConflict, flags.ErrPhaseStep},
	CodeGateFailed:     {http.StatusConflict, flags.ErrGateFailed},
	CodeNotFound:       {http.StatusNotFound, flags.ErrNotFound},
	CodeConflict:       {http.StatusConflict, flags.ErrConflict},
	CodeReasonRequired: {http.StatusUnprocessableEntity, flags.ErrReasonRequired},
	CodeUnauthorized:   {http.StatusUnauthorized, ErrUnauthorized},
	CodeBadRequest:     {http.StatusBadRequest, ErrBadRequest},
	CodeInternal:       {http.StatusInternalServerError, ErrInternal},

	CodeBackfillNotStarted: {http.StatusNotFound, backfill.ErrNotStarted},
	CodeBackfillFinished:   {http.StatusConflict, backfill.ErrFinished},
	CodeBackfillPaused:     {http.StatusConflict, backfill.ErrAlreadyPaused},
	CodeBackfillNotPaused:  {http.StatusConflict, backfill.ErrNotPaused},
	CodeBadRate:            {http.StatusUnprocessableEntity, backfill.ErrInvalidRate},

	CodeReportNotFound: {http.StatusNotFound, report.ErrUnknownReport},
	CodeBadSignOff:     {http.StatusUnprocessableEntity, report.ErrNoSigner},
}

// classify maps an error from the flags manager or the backfill package to a status and code.
// The gate check comes first: a failed cutover may wrap other errors as well; the backfill's
// come before the catalog's, which they may wrap.
func classify(err error) (int, string) {
	for _, c := range []struct {
		target error
		code   string
	}{
		{flags.ErrGateFailed, CodeGateFailed},
		{flags.ErrUnknownFlag, CodeUnknownFlag},
		{flags.ErrBadValue, CodeBadValue},
		{flags.ErrPhaseStep, CodePhaseStep},
		{flags.ErrReasonRequired, CodeReasonRequired},
		{backfill.ErrNotStarted, CodeBackfillNotStarted},
		{backfill.ErrFinished, CodeBackfillFinished},
		{backfill.ErrAlreadyPaused, CodeBackfillPaused},
		{backfill.ErrNotPaused, CodeBackfillNotPaused},
		{backfill.ErrInvalidRate, CodeBadRate},
		{report.ErrUnknownReport, CodeReportNotFound},
		{report.ErrNoSigner, CodeBadSignOff},
		{report.ErrNoComment, CodeBadSignOff},
		{report.ErrSpecVersion, CodeConflict},
		{flags.ErrNotFound, CodeNotFound},
		{catalog.ErrNotFound, CodeNotFound},
		{flags.ErrConflict, CodeConflict},
		{catalog.ErrConflict, CodeConflict},
	} {
		if errors.Is(err, c.target) {
			return codes[c.code].status, c.code
		}
	}
	return http.StatusInternalServerError, CodeInternal
}

// Error is an error answer from the admin API, as the Client returns it.
type Error struct {
	Status  int                // the HTTP status
	Code    string             // one of the Code constants; "" when the answer was not the API's JSON
	Message string             // the server's message
	Gates   []flags.GateResult // for CodeGateFailed, every gate's result
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("admin API: HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// Unwrap returns the sentinel for the code (flags.ErrGateFailed for "gate_failed", say), so
// errors.Is(err, flags.ErrGateFailed) holds for a client error too.
func (e *Error) Unwrap() error {
	if c, ok := codes[e.Code]; ok {
		return c.sentinel
	}
	return nil
}

// FailedGates returns the gates that did not pass.
func FailedGates(gates []flags.GateResult) []flags.GateResult {
	var out []flags.GateResult
	for _, g := range gates {
		if !g.OK {
			out = append(out, g)
		}
	}
	return out
}
