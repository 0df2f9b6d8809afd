// Package admin is tandem's HTTP admin API for migration flags: read them and their history,
// change them, advance the phase, cut over (gated) and roll back (never gated), run a
// verification, read the migration runtime's status, read and control a backfill (pause,
// resume, rate limits), and the Client the CLI uses to call it.
//
// It also serves the operator's dashboard at "/" (dashboard.go: embedded assets, no request
// leaves the page) with its sign-in (auth.go), and the overview the dashboard and
// "tandem status" show (overview.go).
//
// Every call needs "Authorization: Bearer TOKEN" or a dashboard session; reads are open to
// anyone who can reach the listener only when Config.OpenReads says so. A handler built
// without a token refuses every state-changing call with 403 rather than leaving them open.
// See README.md in this folder for the endpoints.
package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
)

// Flags is what the handler needs of a flags.Manager.
type Flags interface {
	Get(ctx context.Context, migration string) (flags.Values, error)
	Set(ctx context.Context, migration string, changes map[string]string, who, why string) (flags.Values, error)
	Advance(ctx context.Context, migration, to, who, why string) (flags.Values, error)
	Cutover(ctx context.Context, migration, who, why string) (flags.Values, []flags.GateResult, error)
	Rollback(ctx context.Context, migration, to, who, why string) (flags.Values, error)
	History(ctx context.Context, migration string, limit int) ([]catalog.AuditEntry, error)
	CheckGates(ctx context.Context, migration string) ([]flags.GateResult, error)
}

var _ Flags = (*flags.Manager)(nil)

// Config configures NewHandler.
type Config struct {
	// Flags reads and changes the flags. Required.
	Flags Flags
	// Token is the bearer token every call must present (or a dashboard session made with
	// it). Optional, but when empty every state-changing call is refused with 403 "admin
	// token not configured", and so is every read unless OpenReads is set.
	Token string
	// OpenReads answers reads (GET) without the token: the dashboard's views and every GET
	// endpoint. Changes still need it.
	OpenReads bool
	// EventInterval is how often GET /v1/migrations/{name}/events sends the overview.
	// Default: DefaultEventInterval.
	EventInterval time.Duration
	// Logger receives one line per state change and per refused call. Default: discard.
	Logger *slog.Logger
	// Who names the caller of a request for the audit trail; the handler prefixes "api:".
	// An error refuses the request with 400. Default: DefaultWho.
	Who func(r *http.Request) (string, error)
	// Verify runs a full verification of a migration (repairing confirmed mismatches when
	// repair is set) and returns its summary, which the cutover gate reads. Optional; without
	// it POST /v1/migrations/{name}/verify answers 501.
	Verify func(ctx context.Context, migration string, repair bool) (catalog.VerifySummary, error)
	// Status reports a migration as the runtime running it sees it (migration.Runner.Status:
	// phase, policy, every path's state), or an error wrapping catalog.ErrNotFound when this
	// server does not run it. Optional; without it GET /v1/migrations/{name}/status answers 501.
	Status func(ctx context.Context, name string) (migration.Status, error)
	// BackfillCatalog is the catalog holding the migrations' backfill plans and their control
	// state, which GET /v1/migrations/{name}/backfill reads (backfill.Status) and POST
	// …/backfill/pause, /resume and /rate change (backfill.Pause, Resume, SetRate,
	// SetBytesRate) for every process running the backfill, wherever it runs. GET
	// /v1/migrations/{name}/verify reads the newest verification run's state from it too
	// (catalog.VerifyState). Optional; without it those endpoints answer 501.
	BackfillCatalog *catalog.Catalog
	// RetryDeadLetters converges a migration's dead letters again on this server's runner of
	// it (migration.Runner.RetryDeadLetters; all: every one, not only those of older spec
	// versions), for POST /v1/migrations/{name}/dead-letters/retry, or fails wrapping
	// catalog.ErrNotFound when this server does not run it. Optional; without it (or without
	// BackfillCatalog, where the retry is audited) the endpoint answers 501.
	RetryDeadLetters func(ctx context.Context, migration string, all bool) (migration.DeadLetterRetry, error)
	// Reports generates, stores, reads and signs release reports (report.Service): POST
	// /v1/migrations/{name}/reports, GET …/reports/{id}, POST …/reports/{id}/signoffs.
	// Optional; without it those endpoints answer 501.
	Reports Reports
}

// MaxBodyBytes is the largest request body the handler reads; a larger one gets 413.
const MaxBodyBytes = 1 << 20

// UserHeader is the request header a caller names itself with for the audit trail.
const UserHeader = "X-Tandem-User"

// History limits: the default when ?limit is absent or 0, and the most one call returns.
const (
	DefaultHistoryLimit = 50
	MaxHistoryLimit     = 1000
)

// Handler is the admin API and the dashboard.
type Handler struct {
	h   *handler
	mux *http.ServeMux
}

// ServeHTTP serves the API under /v1/ and the dashboard at "/", /assets/, /login and /logout:
// mount it at the root of the admin listener.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Close ends the open event streams (a browser reconnects to whoever serves next) and refuses
// new ones, so that an http.Server's Shutdown does not wait for them. Call it before Shutdown.
func (h *Handler) Close() { h.h.closeOnce.Do(func() { close(h.h.closing) }) }

// NewHandler returns the admin API and the dashboard.
func NewHandler(cfg Config) *Handler {
	if cfg.Flags == nil {
		panic("admin.NewHandler: Config.Flags is required")
	}
	h := &handler{flags: cfg.Flags, log: cfg.Logger, who: cfg.Who, verify: cfg.Verify, status: cfg.Status, backfill: cfg.BackfillCatalog, reports: cfg.Reports, retry: cfg.RetryDeadLetters,
		openReads: cfg.OpenReads, interval: cfg.EventInterval, secrets: newSecrets(), streams: make(chan struct{}, maxEventStreams), closing: make(chan struct{}),
		logins: rate.NewLimiter(rate.Every(time.Second), 5)}
	if h.interval <= 0 {
		h.interval = DefaultEventInterval
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.who == nil {
		h.who = DefaultWho
	}
	if cfg.Token != "" {
		sum := sha256.Sum256([]byte(cfg.Token))
		h.tokenSum = &sum
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/session", methods{http.MethodGet: h.getSession})
	mux.Handle("/v1/migrations", methods{http.MethodGet: h.read(h.listMigrations)})
	mux.Handle("/v1/migrations/{name}/overview", methods{http.MethodGet: h.read(h.getOverview)})
	mux.Handle("/v1/migrations/{name}/events", methods{http.MethodGet: h.read(h.events)})
	mux.Handle("/v1/migrations/{name}/flags", methods{http.MethodGet: h.read(h.getFlags), http.MethodPost: h.write(h.setFlags)})
	mux.Handle("/v1/migrations/{name}/history", methods{http.MethodGet: h.read(h.history)})
	mux.Handle("/v1/migrations/{name}/status", methods{http.MethodGet: h.read(h.getStatus)})
	mux.Handle("/v1/migrations/{name}/phase", methods{http.MethodPost: h.write(h.advance)})
	mux.Handle("/v1/migrations/{name}/cutover", methods{http.MethodPost: h.write(h.cutover)})
	mux.Handle("/v1/migrations/{name}/rollback", methods{http.MethodPost: h.write(h.rollback)})
	mux.Handle("/v1/migrations/{name}/verify", methods{http.MethodGet: h.read(h.getVerify), http.MethodPost: h.write(h.runVerify)})
	mux.Handle("/v1/migrations/{name}/backfill", methods{http.MethodGet: h.read(h.getBackfill)})
	mux.Handle("/v1/migrations/{name}/backfill/pause", methods{http.MethodPost: h.write(h.pauseBackfill)})
	mux.Handle("/v1/migrations/{name}/backfill/resume", methods{http.MethodPost: h.write(h.resumeBackfill)})
	mux.Handle("/v1/migrations/{name}/backfill/rate", methods{http.MethodPost: h.write(h.rateBackfill)})
	mux.Handle("/v1/migrations/{name}/dead-letters", methods{http.MethodGet: h.read(h.listDeadLetters)})
	mux.Handle("/v1/migrations/{name}/dead-letters/retry", methods{http.MethodPost: h.write(h.retryDeadLetters)})
	mux.Handle("/v1/migrations/{name}/reports", methods{http.MethodPost: h.write(h.generateReport)})
	mux.Handle("/v1/migrations/{name}/reports/{id}", methods{http.MethodGet: h.read(h.getReport)})
	mux.Handle("/v1/migrations/{name}/reports/{id}/signoffs", methods{http.MethodPost: h.write(h.signReport)})
	h.dashboardRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, fmt.Sprintf("no admin endpoint %s", r.URL.Path), nil)
	})
	return &Handler{h: h, mux: mux}
}

type handler struct {
	verify   func(ctx context.Context, migration string, repair bool) (catalog.VerifySummary, error)
	status   func(ctx context.Context, name string) (migration.Status, error)
	retry    func(ctx context.Context, migration string, all bool) (migration.DeadLetterRetry, error)
	backfill *catalog.Catalog // nil: the backfill endpoints answer 501
	reports  Reports          // nil: the report endpoints answer 501
	flags    Flags
	log      *slog.Logger
	who      func(*http.Request) (string, error)
	tokenSum *[sha256.Size]byte // nil: no token configured

	openReads bool
	secrets   *secrets      // dashboard sessions and one-time login codes
	logins    *rate.Limiter // failed sign-ins
	interval  time.Duration // between two overviews on an event stream
	streams   chan struct{} // a slot per open event stream
	closing   chan struct{} // closed by Close: event streams end
	closeOnce sync.Once
}

// methods routes a path by method and answers any other method with a JSON 405.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f, ok := m[r.Method]; ok {
		f(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for _, meth := range []string{http.MethodGet, http.MethodPost} {
		if _, ok := m[meth]; ok {
			allow = append(allow, meth)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, CodeBadRequest,
		fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")), nil)
}

// change is one authorized state-changing call: who makes it, for which migration.
type change struct {
	migration string
	who       string
}

// write wraps a state-changing endpoint: it checks the bearer token (or the dashboard's
// session, see auth.go), then names the caller. Nothing is read from the body before the
// credentials have been checked.
func (h *handler) write(f func(http.ResponseWriter, *http.Request, change)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.writeAllowed(w, r) {
			return
		}
		who, err := h.who(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error(), nil)
			return
		}
		f(w, r, change{migration: r.PathValue("name"), who: "api:" + who})
	}
}

// DefaultWho names the caller by its X-Tandem-User header when present (printable, at most 128
// characters, else an error), or by the request's remote host.
//
// The header is whatever the caller says it is: on state-changing calls it comes from a holder
// of the token, and it only labels the audit entry.
func DefaultWho(r *http.Request) (string, error) {
	if vs, ok := r.Header[UserHeader]; ok {
		if len(vs) != 1 {
			return "", fmt.Errorf("%s given %d times: give it once", UserHeader, len(vs))
		}
		return validUser(vs[0])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if host == "" {
		host = "unknown"
	}
	return host, nil
}

func validUser(u string) (string, error) {
	switch {
	case u == "":
		return "", fmt.Errorf("%s is empty", UserHeader)
	case !utf8.ValidString(u):
		return "", fmt.Errorf("%s is not valid UTF-8", UserHeader)
	case utf8.RuneCountInString(u) > 128:
		return "", fmt.Errorf("%s is %d characters long: at most 128", UserHeader, utf8.RuneCountInString(u))
	}
	for _, c := range u {
		if !unicode.IsPrint(c) {
			return "", fmt.Errorf("%s %q holds a non-printable character", UserHeader, u)
		}
	}
	return u, nil
}

// Request bodies.
type (
	// SetRequest is the body of POST /v1/migrations/{name}/flags. A value may be a JSON string,
	// number or boolean; it is passed on as its text.
	SetRequest struct {
		Set    map[string]json.RawMessage `json:"set"`
		Reason string                     `json:"reason"`
	}
	// PhaseRequest is the body of POST /v1/migrations/{name}/phase.
	PhaseRequest struct {
		To     string `json:"to"`
		Reason string `json:"reason"`
	}
	// CutoverRequest is the body of POST /v1/migrations/{name}/cutover; it may be empty.
	CutoverRequest struct {
		Reason string `json:"reason"`
	}
	// VerifyRequest is the body of POST /v1/migrations/{name}/verify; it may be empty.
	VerifyRequest struct {
		Repair bool `json:"repair"`
	}
	// RollbackRequest is the body of POST /v1/migrations/{name}/rollback. An empty To lets the
	// flags manager choose the phase to return to.
	RollbackRequest struct {
		To     string `json:"to"`
		Reason string `json:"reason"`
	}
)

// Response bodies.
type (
	// CutoverResponse is the answer to a cutover: the values after it and every gate's result.
	CutoverResponse struct {
		Values flags.Values       `json:"values"`
		Gates  []flags.GateResult `json:"gates"`
	}
	// HistoryResponse is the answer to GET /v1/migrations/{name}/history.
	HistoryResponse struct {
		Entries []HistoryEntry `json:"entries"`
	}
	// HistoryEntry is one audit entry as the API shows it.
	HistoryEntry struct {
		ID        string    `json:"id"`
		Migration string    `json:"migration"`
		Kind      string    `json:"kind"`              // "spec", "phase", "flag", "backfill"
		Subject   string    `json:"subject,omitempty"` // the flag, for kind "flag"; "paused", "rate" or "bytes_rate" for "backfill"
		From      string    `json:"from"`
		To        string    `json:"to"`
		Who       string    `json:"who"`
		Why       string    `json:"why"`
		At        time.Time `json:"at"`
		Revision  int64     `json:"revision,omitempty"`
	}
	// ErrorResponse is the body of every error answer. Gates is set when a cutover gate failed.
	ErrorResponse struct {
		Error string             `json:"error"`
		Code  string             `json:"code"`
		Gates []flags.GateResult `json:"gates,omitempty"`
	}
)

func (h *handler) getFlags(w http.ResponseWriter, r *http.Request) {
	v, err := h.flags.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *handler) history(w http.ResponseWriter, r *http.Request) {
	limit := DefaultHistoryLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxHistoryLimit {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("limit %q: want a whole number from 0 to %d", s, MaxHistoryLimit), nil)
			return
		}
		if n > 0 {
			limit = n
		}
	}
	entries, err := h.flags.History(r.Context(), r.PathValue("name"), limit)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	out := HistoryResponse{Entries: make([]HistoryEntry, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, historyEntry(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) setFlags(w http.ResponseWriter, r *http.Request, c change) {
	var req SetRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Set) == 0 {
		writeError(w, http.StatusBadRequest, CodeBadRequest, `"set" must name at least one flag`, nil)
		return
	}
	changes := make(map[string]string, len(req.Set))
	for name, raw := range req.Set {
		s, err := scalarText(raw)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, CodeBadValue, fmt.Sprintf("flag %s: %v", name, err), nil)
			return
		}
		changes[name] = s
	}
	v, err := h.flags.Set(r.Context(), c.migration, changes, c.who, req.Reason)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Info("admin: flags set", "migration", c.migration, "changes", changes, "who", c.who, "why", req.Reason, "revision", v.Revision)
	writeJSON(w, http.StatusOK, v)
}

// scalarText turns a JSON string, number or boolean into the text the flags manager parses.
func scalarText(raw json.RawMessage) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case float64, bool:
		return string(raw), nil
	default:
		return "", fmt.Errorf("value %s: want a string, number or boolean", raw)
	}
}

func (h *handler) advance(w http.ResponseWriter, r *http.Request, c change) {
	var req PhaseRequest
	if !decode(w, r, &req) {
		return
	}
	if req.To == "" {
		writeError(w, http.StatusBadRequest, CodeBadRequest, `"to" must name the phase to move to`, nil)
		return
	}
	v, err := h.flags.Advance(r.Context(), c.migration, req.To, c.who, req.Reason)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Info("admin: phase advanced", "migration", c.migration, "to", req.To, "who", c.who, "why", req.Reason, "revision", v.Revision)
	writeJSON(w, http.StatusOK, v)
}

func (h *handler) cutover(w http.ResponseWriter, r *http.Request, c change) {
	var req CutoverRequest
	if !decode(w, r, &req) {
		return
	}
	v, gates, err := h.flags.Cutover(r.Context(), c.migration, c.who, req.Reason)
	if gates == nil {
		gates = []flags.GateResult{}
	}
	if err != nil {
		h.fail(w, r, err, gates)
		return
	}
	h.log.Info("admin: cut over", "migration", c.migration, "who", c.who, "why", req.Reason, "revision", v.Revision)
	writeJSON(w, http.StatusOK, CutoverResponse{Values: v, Gates: gates})
}

func (h *handler) rollback(w http.ResponseWriter, r *http.Request, c change) {
	var req RollbackRequest
	if !decode(w, r, &req) {
		return
	}
	v, err := h.flags.Rollback(r.Context(), c.migration, req.To, c.who, req.Reason)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Warn("admin: rolled back", "migration", c.migration, "to", v.Phase, "who", c.who, "why", req.Reason, "revision", v.Revision)
	writeJSON(w, http.StatusOK, v)
}

// getStatus answers with the runtime's status of a migration. It reads memory only.
func (h *handler) getStatus(w http.ResponseWriter, r *http.Request) {
	if h.status == nil {
		writeError(w, http.StatusNotImplemented, CodeBadRequest, "migration status is not available on this server (it runs on a proxy started with --spec)", nil)
		return
	}
	st, err := h.status(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// getVerify answers the state of the migration's newest verification run.
func (h *handler) getVerify(w http.ResponseWriter, r *http.Request) {
	if !h.backfillAvailable(w) {
		return
	}
	st, err := h.backfill.VerifyState(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// runVerify runs a full verification. It changes no flag, but it writes mismatches, repairs
// (with repair) and the summary the cutover gate reads, so it needs the token.
func (h *handler) runVerify(w http.ResponseWriter, r *http.Request, c change) {
	var req VerifyRequest
	if !decode(w, r, &req) {
		return
	}
	if h.verify == nil {
		writeError(w, http.StatusNotImplemented, CodeBadRequest, "verification is not available on this server (it runs on a proxy started with --spec)", nil)
		return
	}
	sum, err := h.verify(r.Context(), c.migration, req.Repair)
	if err != nil {
		h.fail(w, r, err, nil)
		return
	}
	h.log.Info("admin: verified", "migration", c.migration, "who", c.who, "clean", sum.Clean, "keys", sum.Keys, "mismatches", sum.Mismatches)
	writeJSON(w, http.StatusOK, sum)
}

// decode reads a JSON body of at most MaxBodyBytes into dst, refusing unknown fields and
// trailing data; an empty body decodes as {}. On failure it has answered the request.
func decode(w http.ResponseWriter, r *http.Request, dst any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, CodeBadRequest, fmt.Sprintf("Content-Type %q: want application/json", ct), nil)
			return false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, CodeBadRequest, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes), nil)
		} else {
			writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("reading request body: %v", err), nil)
		}
		return false
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		writeError(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("request body: %v", err), nil)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, CodeBadRequest, "request body: data after the JSON object", nil)
		return false
	}
	return true
}

// fail answers with the status and code err maps to.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error, gates []flags.GateResult) {
	status, code := classify(err)
	if status == http.StatusInternalServerError {
		h.log.Error("admin: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code != CodeGateFailed {
		gates = nil
	}
	writeError(w, status, code, err.Error(), gates)
}

func writeError(w http.ResponseWriter, status int, code, msg string, gates []flags.GateResult) {
	writeJSON(w, status, ErrorResponse{Error: msg, Code: code, Gates: gates})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the status is sent; a failed write means the client left
}
