package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The dashboard's sign-in. A browser cannot keep a bearer token in a header of every request
// (EventSource sends none), so a person signs in once — with the token, or with a one-time
// login link that the demo prints — and gets a session cookie:
//
//   - HttpOnly and SameSite=Strict, so neither a script nor another site's page can use it;
//   - kept in this process's memory only (a restart signs everyone out), at most maxSessions,
//     each for sessionTTL;
//   - good for reads, and for changes only together with the header DashboardHeader, which a
//     page of another origin cannot send without a CORS preflight this server never allows,
//     and with an Origin, when the browser sends one, equal to this server's.
//
// The CLI and scripts go on sending "Authorization: Bearer TOKEN" with every request.
const (
	// SessionCookie is the name of the dashboard's session cookie.
	SessionCookie = "tandem_session"
	// DashboardHeader must be on every change made with a session cookie (any non-empty value).
	DashboardHeader = "X-Tandem-Dashboard"
	sessionTTL      = 12 * time.Hour
	loginCodeTTL    = 15 * time.Minute
	maxSessions     = 256
	maxLoginCodes   = 64
)

// secrets holds the sessions and the unused one-time login codes, by the SHA-256 of their
// value, with their expiry.
type secrets struct {
	mu       sync.Mutex
	sessions map[[sha256.Size]byte]time.Time
	codes    map[[sha256.Size]byte]time.Time
	now      func() time.Time
}

func newSecrets() *secrets {
	return &secrets{sessions: map[[sha256.Size]byte]time.Time{}, codes: map[[sha256.Size]byte]time.Time{}, now: time.Now}
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it panics if the system cannot give bytes)
	return base64.RawURLEncoding.EncodeToString(b)
}

// add stores a new secret in m, dropping expired ones first and then, if m is still full, the
// one that expires soonest.
func (s *secrets) add(m map[[sha256.Size]byte]time.Time, ttl time.Duration, max int) string {
	v := randomSecret()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k, exp := range m {
		if !now.Before(exp) {
			delete(m, k)
		}
	}
	for len(m) >= max {
		var oldest [sha256.Size]byte
		first := true
		for k, exp := range m {
			if first || exp.Before(m[oldest]) {
				oldest, first = k, false
			}
		}
		delete(m, oldest)
	}
	m[sha256.Sum256([]byte(v))] = now.Add(ttl)
	return v
}

// valid says whether v is an unexpired secret of m; with burn it is removed (a login code
// works once).
func (s *secrets) valid(m map[[sha256.Size]byte]time.Time, v string, burn bool) bool {
	if v == "" {
		return false
	}
	k := sha256.Sum256([]byte(v))
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := m[k]
	if !ok {
		return false
	}
	if burn || !s.now().Before(exp) {
		delete(m, k)
	}
	return s.now().Before(exp)
}

func (s *secrets) drop(m map[[sha256.Size]byte]time.Time, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(m, sha256.Sum256([]byte(v)))
}

// tokenMatches compares a presented token with the configured one in constant time: both
// sides are hashed first, so neither the token's content nor its length shows in the timing.
func (h *handler) tokenMatches(token string) bool {
	if h.tokenSum == nil {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1
}

// bearer says whether the request carries the right "Authorization: Bearer TOKEN".
func (h *handler) bearer(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && h.tokenMatches(token)
}

// session says whether the request carries a live session cookie.
func (h *handler) session(r *http.Request) bool {
	c, err := r.Cookie(SessionCookie)
	return err == nil && h.secrets.valid(h.secrets.sessions, c.Value, false)
}

// sameOrigin says whether a cookie-authenticated change comes from this server's own page:
// DashboardHeader is set and the Origin, if the browser sent one, is this server's.
func sameOrigin(r *http.Request) bool {
	if r.Header.Get(DashboardHeader) == "" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// readAllowed says whether a read may be answered: reads are open, or the caller holds the
// token or a session.
func (h *handler) readAllowed(r *http.Request) bool {
	return h.openReads || h.bearer(r) || h.session(r)
}

// read wraps a read-only endpoint: unless the server has reads open, it needs the token or a
// dashboard session, like every change.
func (h *handler) read(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.readAllowed(r) {
			f(w, r)
			return
		}
		if h.tokenSum == nil {
			writeError(w, http.StatusForbidden, CodeUnauthorized, "reads need the admin token and this server has none: start it with --admin-token-file, or with --admin-open-reads to let anyone who reaches it read", nil)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "this admin API needs the token for reads too: send Authorization: Bearer TOKEN, or sign in at /login", nil)
	}
}

// writeAllowed checks a change's credentials; on refusal it has answered the request.
func (h *handler) writeAllowed(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case h.tokenSum == nil:
		h.log.Warn("admin: state-changing call refused: no admin token configured", "path", r.URL.Path, "remote", r.RemoteAddr)
		writeError(w, http.StatusForbidden, CodeUnauthorized, "admin token not configured: state-changing calls are disabled on this server", nil)
		return false
	case h.bearer(r):
		return true
	case h.session(r) && sameOrigin(r):
		return true
	case h.session(r):
		h.log.Warn("admin: state-changing call refused: a session cookie without the dashboard's header or from another origin", "path", r.URL.Path, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
		writeError(w, http.StatusForbidden, CodeUnauthorized, "a change made with the dashboard's session must come from the dashboard's own page ("+DashboardHeader+" header, same origin)", nil)
		return false
	default:
		h.log.Warn("admin: state-changing call refused: bad or missing bearer token", "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token", nil)
		return false
	}
}

// LoginLink returns a one-time sign-in link for the dashboard under base (the admin
// listener's URL, e.g. "http://127.0.0.1:9090"): opened once within 15 minutes, it gives the
// browser a session, as signing in with the token would. It fails when the server has no token,
// because then there is nothing to sign in to.
func (h *Handler) LoginLink(base string) (string, error) {
	if h.h.tokenSum == nil {
		return "", errNoToken
	}
	code := h.h.secrets.add(h.h.secrets.codes, loginCodeTTL, maxLoginCodes)
	return strings.TrimRight(base, "/") + "/login?code=" + url.QueryEscape(code), nil
}

// startSession gives the browser a new session cookie.
func (h *handler) startSession(w http.ResponseWriter, r *http.Request) {
	v := h.secrets.add(h.secrets.sessions, sessionTTL, maxSessions)
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: v, Path: "/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

func clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}
