package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
)

// Client calls the admin API. It is safe for concurrent use once built.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	// User, when set, is sent as X-Tandem-User and names the caller in the audit trail (the
	// server prefixes "api:"); when empty, the server uses the caller's address.
	User string
}

// maxReplyBytes bounds how much of a reply the client reads.
const maxReplyBytes = 8 << 20

// NewClient returns a client of the admin API at baseURL (http or https, for example
// "http://127.0.0.1:9090"). token is the bearer token for state-changing calls; "" sends none,
// and the server then refuses them. httpClient nil means http.DefaultClient.
func NewClient(baseURL, token string, httpClient *http.Client) (*Client, error) {
	u, err := ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: u, token: token, http: httpClient}, nil
}

// ParseBaseURL checks that s is an http or https URL with a host and no query or fragment.
func ParseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("admin URL %q: %w", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("admin URL %q: want http:// or https://", s)
	case u.Host == "":
		return nil, fmt.Errorf("admin URL %q: no host", s)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("admin URL %q: want no user, query or fragment", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Get returns a migration's flags.
func (c *Client) Get(ctx context.Context, migration string) (flags.Values, error) {
	var v flags.Values
	err := c.do(ctx, http.MethodGet, migration, "flags", nil, nil, &v)
	return v, err
}

// Set changes flags (name to value, as text) and returns the values after the change.
func (c *Client) Set(ctx context.Context, migration string, changes map[string]string, reason string) (flags.Values, error) {
	set := make(map[string]json.RawMessage, len(changes))
	for k, v := range changes {
		b, err := json.Marshal(v)
		if err != nil {
			return flags.Values{}, err
		}
		set[k] = b
	}
	var v flags.Values
	err := c.do(ctx, http.MethodPost, migration, "flags", nil, SetRequest{Set: set, Reason: reason}, &v)
	return v, err
}

// Advance moves a migration to the next phase (to); the server refuses skips and cutover.
func (c *Client) Advance(ctx context.Context, migration, to, reason string) (flags.Values, error) {
	var v flags.Values
	err := c.do(ctx, http.MethodPost, migration, "phase", nil, PhaseRequest{To: to, Reason: reason}, &v)
	return v, err
}

// Cutover runs the cutover gates and, when all pass, moves the migration to cutover. When a
// gate fails, the error is an *Error with code "gate_failed" and its Gates list every result;
// the returned CutoverResponse then holds those gates too.
func (c *Client) Cutover(ctx context.Context, migration, reason string) (CutoverResponse, error) {
	var out CutoverResponse
	err := c.do(ctx, http.MethodPost, migration, "cutover", nil, CutoverRequest{Reason: reason}, &out)
	var e *Error
	if errors.As(err, &e) {
		out.Gates = e.Gates
	}
	return out, err
}

// VerifyState returns the state of the migration's newest verification run.
func (c *Client) VerifyState(ctx context.Context, migration string) (catalog.VerifyState, error) {
	var out catalog.VerifyState
	err := c.do(ctx, http.MethodGet, migration, "verify", nil, nil, &out)
	return out, err
}

// Verify runs a full verification on the server (repairing confirmed mismatches with repair)
// and returns its summary; a run that found mismatches is no error: see Clean.
func (c *Client) Verify(ctx context.Context, migration string, repair bool) (catalog.VerifySummary, error) {
	var out catalog.VerifySummary
	err := c.do(ctx, http.MethodPost, migration, "verify", nil, VerifyRequest{Repair: repair}, &out)
	return out, err
}

// Status returns how the proxy running a migration sees it: its phase, the policy it computed
// from the flags, and each path's state.
func (c *Client) Status(ctx context.Context, name string) (migration.Status, error) {
	var out migration.Status
	err := c.do(ctx, http.MethodGet, name, "status", nil, nil, &out)
	return out, err
}

// BackfillStatus returns a migration's backfill progress over every process running it;
// an error wrapping backfill.ErrNotStarted when it has no backfill plan.
func (c *Client) BackfillStatus(ctx context.Context, migration string) (backfill.Progress, error) {
	var out backfill.Progress
	err := c.do(ctx, http.MethodGet, migration, "backfill", nil, nil, &out)
	return out, err
}

// BackfillPause pauses a migration's backfill in every process within a second and returns the
// progress after it; reason is required. A backfill not started, finished or already paused is
// refused (backfill.ErrNotStarted, ErrFinished, ErrAlreadyPaused).
func (c *Client) BackfillPause(ctx context.Context, migration, reason string) (backfill.Progress, error) {
	var out backfill.Progress
	err := c.do(ctx, http.MethodPost, migration, "backfill/pause", nil, BackfillRequest{Reason: reason}, &out)
	return out, err
}

// BackfillResume lets a paused backfill go on; backfill.ErrNotPaused if it is not paused.
func (c *Client) BackfillResume(ctx context.Context, migration, reason string) (backfill.Progress, error) {
	var out backfill.Progress
	err := c.do(ctx, http.MethodPost, migration, "backfill/resume", nil, BackfillRequest{Reason: reason}, &out)
	return out, err
}

// BackfillRate sets a backfill's limits for all its processes together, in documents and bytes
// per second, and returns the progress after it. A limit of 0 is left as it is (at least one
// must be set), backfill.Unlimited removes it, and less than 0 is refused
// (backfill.ErrInvalidRate). reason is required.
func (c *Client) BackfillRate(ctx context.Context, migration string, docsPerSec, bytesPerSec float64, reason string) (backfill.Progress, error) {
	req := RateRequest{Reason: reason}
	var err error
	if req.DocsPerSec, err = rateJSON(docsPerSec); err != nil {
		return backfill.Progress{}, fmt.Errorf("docs_per_sec: %w", err)
	}
	if req.BytesPerSec, err = rateJSON(bytesPerSec); err != nil {
		return backfill.Progress{}, fmt.Errorf("bytes_per_sec: %w", err)
	}
	var out backfill.Progress
	err = c.do(ctx, http.MethodPost, migration, "backfill/rate", nil, req, &out)
	return out, err
}

// Rollback moves a migration back (to "" lets the server choose) and is never gated; reason is required.
func (c *Client) Rollback(ctx context.Context, migration, to, reason string) (flags.Values, error) {
	var v flags.Values
	err := c.do(ctx, http.MethodPost, migration, "rollback", nil, RollbackRequest{To: to, Reason: reason}, &v)
	return v, err
}

// History returns a migration's audit entries, at most limit (0: the server's default).
func (c *Client) History(ctx context.Context, migration string, limit int) ([]HistoryEntry, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out HistoryResponse
	err := c.do(ctx, http.MethodGet, migration, "history", q, nil, &out)
	return out.Entries, err
}

// Migrations lists the migrations of the catalog, by name.
func (c *Client) Migrations(ctx context.Context) ([]MigrationSummary, error) {
	var out MigrationsResponse
	err := c.call(ctx, http.MethodGet, "/v1/migrations", "/v1/migrations", nil, nil, &out)
	return out.Migrations, err
}

// Overview returns every part of a migration on one page: what the dashboard shows and
// "tandem status" prints.
func (c *Client) Overview(ctx context.Context, migration string) (Overview, error) {
	var out Overview
	err := c.do(ctx, http.MethodGet, migration, "overview", nil, nil, &out)
	return out, err
}

// do calls /v1/migrations/{migration}/{endpoint} and decodes a 2xx answer into out; any other
// answer becomes an *Error.
func (c *Client) do(ctx context.Context, method, migration, endpoint string, q url.Values, body, out any) error {
	if migration == "" {
		return errors.New("no migration named")
	}
	return c.call(ctx, method, "/v1/migrations/"+migration+"/"+endpoint, "/v1/migrations/"+url.PathEscape(migration)+"/"+endpoint, q, body, out)
}

// call calls path (escaped: its escaped form) under the base URL.
func (c *Client) call(ctx context.Context, method, path, escaped string, q url.Values, body, out any) error {
	endpoint := path
	u := *c.base
	u.Path += path
	u.RawPath = c.base.EscapedPath() + escaped
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding %s request: %w", endpoint, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.User != "" {
		req.Header.Set(UserHeader, c.User)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("calling the admin API: %w", err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		return fmt.Errorf("reading the admin API's answer to %s %s: %w", method, u.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e ErrorResponse
		if json.Unmarshal(reply, &e) != nil || e.Code == "" {
			return &Error{Status: resp.StatusCode, Message: snippet(reply)}
		}
		return &Error{Status: resp.StatusCode, Code: e.Code, Message: e.Error, Gates: e.Gates}
	}
	if err := json.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("admin API answered %s %s with something other than its JSON (%v): %s", method, u.Path, err, snippet(reply))
	}
	return nil
}

// snippet is the start of a non-API answer, for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}
