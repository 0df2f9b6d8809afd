package admin

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// The dashboard: one page, its script and its style, embedded in the binary. The page loads
// nothing from anywhere but this server (its Content-Security-Policy says so to the browser),
// reads the overview from the event stream (GET /v1/migrations/{name}/events) and makes its
// changes through the same endpoints as the CLI, with the session cookie of auth.go.

//go:embed ui
var uiFiles embed.FS

var (
	ui        = mustSub(uiFiles, "ui")
	loginPage = template.Must(template.ParseFS(uiFiles, "ui/login.html.tmpl"))
)

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

var errNoToken = errors.New("the admin server has no token: there is nothing to sign in with (start it with --admin-token-file)")

// pageCSP allows the page its own script, style and API, and nothing else: no inline script,
// no other origin, no framing.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// assetTypes are the Content-Types of the files under ui/ that are served as they are.
var assetTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
}

func (h *handler) dashboardRoutes(mux *http.ServeMux) {
	mux.Handle("/{$}", methods{http.MethodGet: h.dashboard})
	mux.Handle("/assets/{file}", methods{http.MethodGet: h.asset})
	mux.Handle("/login", methods{http.MethodGet: h.login, http.MethodPost: h.loginWithToken})
	mux.Handle("/logout", methods{http.MethodPost: h.logout})
}

func pageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
}

// dashboard serves the page to a reader, and sends anyone else to sign in.
func (h *handler) dashboard(w http.ResponseWriter, r *http.Request) {
	if !h.readAllowed(r) {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	b, err := fs.ReadFile(ui, "index.html")
	if err != nil {
		writeError(w, http.StatusInternalServerError, CodeInternal, err.Error(), nil)
		return
	}
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

// asset serves the page's script and style; they hold no data, so they need no sign-in.
func (h *handler) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	typ, ok := assetTypes[path.Ext(name)]
	if !ok || strings.Contains(name, "/") {
		writeError(w, http.StatusNotFound, CodeNotFound, "no asset "+name, nil)
		return
	}
	b, err := fs.ReadFile(ui, name)
	if err != nil {
		writeError(w, http.StatusNotFound, CodeNotFound, "no asset "+name, nil)
		return
	}
	pageHeaders(w)
	w.Header().Set("Content-Type", typ)
	_, _ = w.Write(b)
}

// loginData fills the sign-in page.
type loginData struct {
	Message   string
	HasToken  bool
	OpenReads bool
}

func (h *handler) loginForm(w http.ResponseWriter, status int, msg string) {
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, loginData{Message: msg, HasToken: h.tokenSum != nil, OpenReads: h.openReads})
}

// login answers GET /login: with ?code= the one-time link (used up by this visit), else the
// sign-in form.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	if code == "" {
		h.loginForm(w, http.StatusOK, "")
		return
	}
	if !h.secrets.valid(h.secrets.codes, code, true) {
		h.log.Warn("admin: sign-in refused: a used, expired or unknown login link", "remote", r.RemoteAddr)
		h.loginForm(w, http.StatusUnauthorized, "This login link has been used or has expired (a link works once, for 15 minutes). Sign in with the admin token instead.")
		return
	}
	h.log.Info("admin: signed in with a one-time link", "remote", r.RemoteAddr)
	h.startSession(w, r)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// loginWithToken answers the sign-in form: a right token starts a session. Failures are
// limited to a few a second for the whole server, so the token cannot be guessed quickly.
func (h *handler) loginWithToken(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && origin != "null" {
		if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
			h.loginForm(w, http.StatusForbidden, "Sign in from this server's own page.")
			return
		}
	}
	if h.tokenSum == nil {
		h.loginForm(w, http.StatusForbidden, "This server has no admin token, so nobody can sign in: start it with --admin-token-file.")
		return
	}
	if h.logins.Tokens() < 1 {
		h.loginForm(w, http.StatusTooManyRequests, "Too many failed sign-ins: wait a few seconds and try again.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		h.loginForm(w, http.StatusBadRequest, "The sign-in form could not be read: "+err.Error())
		return
	}
	if !h.tokenMatches(r.PostFormValue("token")) {
		h.logins.Allow()
		h.log.Warn("admin: sign-in refused: wrong token", "remote", r.RemoteAddr)
		h.loginForm(w, http.StatusUnauthorized, "That is not the admin token.")
		return
	}
	h.log.Info("admin: signed in with the token", "remote", r.RemoteAddr)
	h.startSession(w, r)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the caller's session; it needs the dashboard's header, like any change made with
// the cookie.
func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, CodeUnauthorized, "sign out from the dashboard's own page ("+DashboardHeader+" header, same origin)", nil)
		return
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		h.secrets.drop(h.secrets.sessions, c.Value)
	}
	clearSession(w, r)
	w.WriteHeader(http.StatusNoContent)
}

// SessionResponse is the answer to GET /v1/session: what the caller may do.
type SessionResponse struct {
	SignedIn        bool `json:"signed_in"`        // holds a session or the token
	CanRead         bool `json:"can_read"`         // may read (signed in, or reads are open)
	CanChange       bool `json:"can_change"`       // may make changes (signed in, and the server has a token)
	OpenReads       bool `json:"open_reads"`       // reads need no token on this server
	TokenConfigured bool `json:"token_configured"` // the server has a token
}

func (h *handler) getSession(w http.ResponseWriter, r *http.Request) {
	signed := h.bearer(r) || h.session(r)
	writeJSON(w, http.StatusOK, SessionResponse{
		SignedIn: signed, CanRead: signed || h.openReads, CanChange: signed && h.tokenSum != nil,
		OpenReads: h.openReads, TokenConfigured: h.tokenSum != nil,
	})
}
