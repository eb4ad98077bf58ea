package authserver

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/promreg"
)

// Interaction paths (below PathInteract).
const (
	PathInteractStyle  = "/interact/style.css"
	PathInteractGrants = "/interact/grants"
)

// Interaction limits.
const (
	// maxWrongCodes wrong codes (or failed logins) per client IP per minute; the next
	// attempt gets 429.
	maxWrongCodes     = 10
	maxLimiterEntries = 10000
	sessionLifetime   = 15 * time.Minute
	sessionCookie     = "aauth_session"
	maxFormBody       = 16 << 10
	maxCallbackLen    = 2048
)

//go:embed templates
var templateFS embed.FS

var (
	pages    map[string]*template.Template
	styleCSS []byte
)

func init() {
	layout := template.Must(template.New("layout").ParseFS(templateFS, "templates/layout.html"))
	pages = map[string]*template.Template{}
	for _, name := range []string{"code", "login", "consent", "done", "error", "grants"} {
		t := template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
		pages[name] = t
	}
	var err error
	styleCSS, err = templateFS.ReadFile("templates/style.css")
	if err != nil {
		panic(err)
	}
}

// pageData is what every page template gets.
type pageData struct {
	Title     string
	Host      string
	User      string
	CanLogout bool
	CSRF      string
	Code      string
	Callback  string
	Next      string
	Error     string
	Message   string
	Link      string
	LinkText  string

	Req         *consentView
	RememberFor string
	Grants      []grantView
}

type consentView struct {
	Agent, VerifiedBy, KeyJKT, Resource, ClientName string
	// Self: the agent asks for access to itself (self-access); Chain: a resource asks on
	// behalf of the user (or agent) of an upstream token (token exchange).
	Self          bool
	Chain         *chainView
	Scopes        []scopeView
	Purpose       string
	Exchange      []exchange
	Expires       string
	CanAsk        bool
	QuestionsLeft int
}

type scopeView struct{ Name, Description string }

// chainView is what a token exchange's consent page shows about the upstream token: the
// user it names (sub, empty when it names none), the agent it was issued to, the auth
// server that issued it, and how many exchanges the new token is from the original.
type chainView struct {
	Subject, UpstreamAgent, UpstreamIssuer string
	Depth                                  int
}

type grantView struct {
	ID, Agent, Resource string
	Scopes              []string
	Expires             string
}

// interaction is the per-request state of the interaction pages.
type interaction struct {
	h   *Handler
	w   http.ResponseWriter
	r   *http.Request
	sid string // browser session id (cookie)
	ip  string
}

// serveInteract routes the interaction pages.
func (h *Handler) serveInteract(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == PathInteractStyle {
		h.serveStyle(w, r)
		return
	}
	it := &interaction{h: h, w: w, r: r, ip: caddyaauth.ClientIP(r)}
	if c, err := r.Cookie(sessionCookie); err == nil && validRandomID(c.Value, 32) {
		it.sid = c.Value
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if it.sid == "" {
			it.sid = newRandomID(32)
			it.setCookie(it.sid)
		}
		if r.URL.Path == PathInteractGrants {
			it.grantsPage("", http.StatusOK)
			return
		}
		it.get()
	case http.MethodPost:
		it.post()
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		it.errorPage(http.StatusMethodNotAllowed, "Method not allowed", "This page only accepts GET and POST.")
	}
}

func (h *Handler) serveStyle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	setPageSecurity(hdr, "")
	hdr.Set("Content-Type", "text/css; charset=utf-8")
	hdr.Set("Cache-Control", "public, max-age=3600")
	hdr.Set("Content-Length", strconv.Itoa(len(styleCSS)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(styleCSS)
	}
}

// setPageSecurity sets the headers every interaction response carries. formAction adds
// an origin the forms may be redirected to (the agent's callback).
func setPageSecurity(hdr http.Header, formAction string) {
	fa := "'self'"
	if formAction != "" {
		fa += " " + formAction
	}
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; form-action "+fa+"; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-store")
}

func (it *interaction) setCookie(sid string) {
	http.SetCookie(it.w, &http.Cookie{
		Name:     sessionCookie,
		Value:    sid,
		Path:     PathInteract,
		HttpOnly: true,
		Secure:   strings.HasPrefix(it.h.Issuer, "https://"),
		SameSite: http.SameSiteLaxMode,
	})
}

// render writes a page.
func (it *interaction) render(status int, page string, d pageData, formAction string) {
	d.Host = it.h.authority
	if d.CSRF == "" && it.sid != "" {
		tok, err := it.h.consent.csrfToken(it.r.Context(), it.sid)
		if err != nil {
			it.h.logger.Error("loading the interaction key", zap.Error(err))
			status, page, d = http.StatusInternalServerError, "error", pageData{Host: d.Host, Title: "Server error", Message: "The server could not show this page. Try again later."}
		}
		d.CSRF = tok
	}
	if d.User == "" {
		d.User = it.user()
		d.CanLogout = d.User != "" && it.h.UserFrom == ""
	}
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		it.h.logger.Error("rendering interaction page", zap.String("page", page), zap.Error(err))
		status, buf = http.StatusInternalServerError, *bytes.NewBufferString("internal error\n")
	}
	hdr := it.w.Header()
	setPageSecurity(hdr, formAction)
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(buf.Len()))
	it.w.WriteHeader(status)
	if it.r.Method != http.MethodHead {
		_, _ = it.w.Write(buf.Bytes())
	}
}

func (it *interaction) errorPage(status int, title, msg string) {
	it.render(status, "error", pageData{Title: title, Message: msg, Link: PathInteract, LinkText: "Enter another code"}, "")
}

// user is the signed-in user: from the configured placeholder (user_from), or from the
// login session.
func (it *interaction) user() string {
	if it.h.UserFrom != "" {
		repl, ok := it.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if !ok {
			return ""
		}
		u := strings.TrimSpace(repl.ReplaceAll(it.h.UserFrom, ""))
		if checkUserName(u) != nil {
			return ""
		}
		return u
	}
	if it.sid == "" {
		return ""
	}
	return it.h.consent.sessionUser(it.r.Context(), it.sid, it.h.now())
}

// ---- GET ----

func (it *interaction) get() {
	q := it.r.URL.Query()
	rawCode, callback := q.Get("code"), q.Get("callback")
	if len(callback) > maxCallbackLen {
		callback = ""
	}
	if rawCode == "" {
		it.render(http.StatusOK, "code", pageData{Title: "Connect an agent", Callback: callback}, "")
		return
	}
	code, rec, ok := it.find(rawCode, callback)
	if !ok {
		return
	}
	it.showRequest(code, callback, rec, "", http.StatusOK)
}

// showRequest shows the login page or, once the user is known, the consent page.
func (it *interaction) showRequest(code, callback string, rec pendingRecord, errMsg string, status int) {
	view := it.h.consentView(rec)
	user := it.user()
	if user == "" {
		if it.h.UserFrom != "" {
			it.errorPage(http.StatusUnauthorized, "Not signed in", "This server could not tell who you are. Sign in through your organisation's login and try again.")
			return
		}
		it.render(status, "login", pageData{Title: "Sign in", Code: code, Callback: callback, Req: view, Error: errMsg}, "")
		return
	}
	formAction := ""
	if cb, ok := validCallback(callback, &rec); ok {
		formAction = originOf(cb)
	} else {
		callback = ""
	}
	it.render(status, "consent", pageData{
		Title: "Allow access?", Code: code, Callback: callback, Req: view, Error: errMsg,
		RememberFor: humanDuration(it.h.rememberFor),
	}, formAction)
}

// find resolves a typed code to its pending request, answering the error page itself
// when it cannot (rate limit, malformed, unknown, used, expired, already decided).
func (it *interaction) find(raw, callback string) (string, pendingRecord, bool) {
	h := it.h
	now := h.now()
	if !h.consent.limiter.Take(it.ip, now) {
		it.tooMany()
		return "", pendingRecord{}, false
	}
	guess := true // a wrong guess unless the code turns out to exist
	defer func() { h.consent.limiter.Done(it.ip, now, guess) }()
	wrong := func() {
		it.render(http.StatusBadRequest, "code", pageData{
			Title: "Connect an agent", Callback: callback, Code: clipChars(raw, 20),
			Error: "That code is not valid. Check it and try again.",
		}, "")
	}
	code, ok := normalizeCode(raw)
	if !ok {
		wrong()
		return "", pendingRecord{}, false
	}
	ctx := it.r.Context()
	cr, err := h.consent.lookupCode(ctx, code)
	if errors.Is(err, errNotFound) {
		wrong()
		return "", pendingRecord{}, false
	}
	if err != nil {
		guess = false // our fault, not the client's
		it.serverError("loading interaction code", err)
		return "", pendingRecord{}, false
	}
	guess = false // a real code, used or not
	if cr.Used {
		// a code is used up by the decision on its request (here or on another instance)
		it.errorPage(http.StatusGone, "Already decided", "This request has already been approved or denied: its code has already been used. If the agent still needs access, ask it for a new code.")
		return "", pendingRecord{}, false
	}
	rec, _, err := h.consent.get(ctx, cr.ID, storageRecheck)
	if errors.Is(err, errNotFound) || (err == nil && rec.Decided == 0 && (now.Unix() >= cr.Exp || rec.expired(now))) {
		it.errorPage(http.StatusGone, "Code expired", "This code has expired. Ask the agent to start again for a new code.")
		return "", pendingRecord{}, false
	}
	if err != nil {
		it.serverError("loading pending request", err)
		return "", pendingRecord{}, false
	}
	if rec.Status != statusPending {
		it.errorPage(http.StatusGone, "Already decided", "This request has already been approved or denied.")
		return "", pendingRecord{}, false
	}
	return code, rec, true
}

func (it *interaction) tooMany() {
	it.h.metrics.limited(promreg.LimiterInteract)
	it.w.Header().Set("Retry-After", "60")
	it.errorPage(http.StatusTooManyRequests, "Too many attempts", "Too many wrong codes or sign-in attempts from your network. Wait a minute and try again.")
}

func (it *interaction) serverError(what string, err error) {
	it.h.logger.Error(what, zap.Error(err), zap.String("remote_ip", it.ip))
	it.errorPage(http.StatusInternalServerError, "Something went wrong", "The server could not complete this step. Try again in a moment.")
}

// consentView renders a record's verified facts and untrusted text for the page.
func (h *Handler) consentView(rec pendingRecord) *consentView {
	v := &consentView{
		Agent: rec.Agent, KeyJKT: rec.KeyJKT, Resource: rec.Resource, ClientName: rec.ClientName,
		Purpose: rec.Purpose, Exchange: rec.Exchange, Self: rec.Self,
		Expires: time.Unix(rec.Expires, 0).UTC().Format("2 Jan 2006 15:04:05 UTC"),
	}
	if rec.ExchangeDepth > 0 {
		v.Chain = &chainView{Subject: rec.Subject, UpstreamAgent: rec.UpstreamAgent, UpstreamIssuer: rec.UpstreamIssuer, Depth: rec.ExchangeDepth}
	}
	switch {
	case rec.Delegate != "":
		v.VerifiedBy = "Signed by delegate “" + rec.Delegate + "” of agent " + rec.Agent + ", holding an agent token the agent signed"
	case rec.Scheme == "jwt":
		v.VerifiedBy = "Signed with a key certified by an agent token from " + rec.Agent
	default:
		v.VerifiedBy = "Signed with its published key (jwks_uri)"
	}
	for _, s := range rec.scopes() {
		v.Scopes = append(v.Scopes, scopeView{Name: s, Description: rec.ScopeDescriptions[s]})
	}
	if rec.Clarification {
		v.QuestionsLeft = MaxClarificationRounds - rec.questionsAsked()
		v.CanAsk = v.QuestionsLeft > 0 && rec.waitingQuestion() == ""
	}
	return v
}

// ---- POST ----

func (it *interaction) post() {
	r := it.r
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		it.errorPage(http.StatusUnsupportedMediaType, "Unsupported form", "This form could not be read.")
		return
	}
	r.Body = http.MaxBytesReader(it.w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		it.errorPage(http.StatusBadRequest, "Unreadable form", "This form could not be read.")
		return
	}
	f := r.PostForm
	ok, err := it.h.consent.checkCSRF(r.Context(), it.sid, f.Get("csrf"))
	if err != nil {
		it.h.logger.Error("loading the interaction key", zap.Error(err))
		it.errorPage(http.StatusInternalServerError, "Server error", "The server could not check this form. Try again later.")
		return
	}
	if !ok {
		it.errorPage(http.StatusForbidden, "Form expired", "This form has expired or did not come from this site. Go back, reload the page and try again.")
		return
	}
	if r.URL.Path == PathInteractGrants {
		it.revokeOwn(f.Get("id"))
		return
	}
	switch f.Get("action") {
	case "login":
		it.login(f)
	case "logout":
		it.h.consent.endSession(r.Context(), it.sid)
		it.sid = newRandomID(32)
		it.setCookie(it.sid)
		it.redirect(PathInteract)
	case "approve", "deny", "ask":
		it.decide(f)
	default:
		it.errorPage(http.StatusBadRequest, "Unknown action", "This form asked for something this page does not do.")
	}
}

func (it *interaction) redirect(to string) {
	setPageSecurity(it.w.Header(), "")
	http.Redirect(it.w, it.r, to, http.StatusSeeOther)
}

func interactURL(code, callback string) string {
	q := url.Values{}
	if code != "" {
		q.Set("code", code)
	}
	if callback != "" {
		q.Set("callback", callback)
	}
	if len(q) == 0 {
		return PathInteract
	}
	return PathInteract + "?" + q.Encode()
}

func (it *interaction) login(f url.Values) {
	h := it.h
	if h.UserFrom != "" || len(h.Users) == 0 {
		it.errorPage(http.StatusBadRequest, "No sign-in here", "This server does not use its own sign-in form.")
		return
	}
	now := h.now()
	if !h.consent.limiter.Take(it.ip, now) {
		it.tooMany()
		return
	}
	code, callback, next := f.Get("code"), f.Get("callback"), f.Get("next")
	if len(callback) > maxCallbackLen {
		callback = ""
	}
	name, ok := authenticate(h.Users, f.Get("username"), f.Get("password"))
	h.consent.limiter.Done(it.ip, now, !ok)
	if !ok {
		h.logger.Info("consent page login failed", zap.String("remote_ip", it.ip))
		d := pageData{Title: "Sign in", Code: clipChars(code, 20), Callback: callback, Next: next, Error: "The user name or password is wrong."}
		it.render(http.StatusUnauthorized, "login", d, "")
		return
	}
	it.h.consent.endSession(it.r.Context(), it.sid)
	sid, err := h.consent.newSession(it.r.Context(), name, now.Add(sessionLifetime))
	if err != nil {
		it.serverError("storing session", err)
		return
	}
	it.sid = sid
	it.setCookie(sid)
	h.logger.Info("consent page login", zap.String("user", name), zap.String("remote_ip", it.ip))
	if next == "grants" {
		it.redirect(PathInteractGrants)
		return
	}
	c, _ := normalizeCode(code)
	it.redirect(interactURL(c, callback))
}

// decide handles approve, deny and ask on the consent page.
func (it *interaction) decide(f url.Values) {
	h := it.h
	user := it.user()
	callback := f.Get("callback")
	if len(callback) > maxCallbackLen {
		callback = ""
	}
	if user == "" {
		it.notSignedIn()
		return
	}
	code, rec, ok := it.find(f.Get("code"), callback)
	if !ok {
		return
	}
	ctx := it.r.Context()
	now := h.now()
	action := f.Get("action")
	if action == "ask" {
		it.ask(code, callback, rec, strings.TrimSpace(f.Get("question")))
		return
	}
	remember := action == "approve" && f.Get("remember") != "" && h.rememberFor > 0
	rec, err := h.recordDecision(ctx, rec.ID, user, action == "approve", remember, now)
	if errors.Is(err, errNoLongerPending) {
		it.errorPage(http.StatusGone, "Already decided", "This request has already been approved or denied, or it expired.")
		return
	}
	if err != nil {
		it.serverError("storing decision", err)
		return
	}
	if err := h.consent.consumeCode(ctx, code, codeRecord{ID: rec.ID, Exp: rec.Expires}); err != nil {
		h.logger.Error("marking interaction code used", zap.Error(err))
	}
	h.consentDecided(&rec, action == "approve")
	h.logger.Info("consent decision",
		zap.String("decision", action), zap.String("user", user), zap.String("agent", rec.Agent),
		zap.String("resource", rec.Resource), zap.String("scope", rec.Scope), zap.Bool("remember", remember))
	if remember {
		h.rememberGrant(ctx, user, &rec, now)
	}
	it.decided(action == "approve", callback, &rec)
}

// notSignedIn is the page for a decision posted without a signed-in user.
func (it *interaction) notSignedIn() {
	if it.h.UserFrom != "" {
		it.errorPage(http.StatusUnauthorized, "Not signed in", "This server could not tell who you are. Sign in through your organisation's login and try again.")
		return
	}
	it.errorPage(http.StatusUnauthorized, "Signed out", "Your session ended. Open the link again and sign in.")
}

// recordDecision stores the user's approval or denial of pending request id, or returns
// errNoLongerPending when it was decided already or expired.
func (h *Handler) recordDecision(ctx context.Context, id, user string, approve, remember bool, now time.Time) (pendingRecord, error) {
	return h.consent.update(ctx, id, func(p *pendingRecord) error {
		if p.Status != statusPending || p.expired(now) {
			return errNoLongerPending
		}
		p.User, p.Decided, p.Remember = user, now.Unix(), remember
		if approve {
			p.Status = statusApproved
			// the agent has a fresh pending lifetime to pick the token up
			p.Expires = max(p.Expires, now.Add(h.pendingLifetime).Unix())
		} else {
			p.Status = statusDenied
		}
		return nil
	})
}

// rememberGrant stores an approval as a grant for RememberFor; a failure is logged, the
// decision itself stands.
func (h *Handler) rememberGrant(ctx context.Context, user string, rec *pendingRecord, now time.Time) {
	g, err := h.consent.addGrant(ctx, grant{
		User: user, Agent: rec.Agent, Delegate: rec.Delegate, KeyJKT: rec.KeyJKT, Resource: rec.Resource,
		Scopes: rec.scopes(), Created: now.Unix(), Expires: now.Add(h.rememberFor).Unix(), Subject: rec.Subject,
	})
	if err != nil {
		h.logger.Error("storing remembered grant", zap.Error(err))
		return
	}
	h.logger.Info("consent remembered", zap.String("grant", g.ID), zap.String("user", user))
}

// decided answers the browser after a decision. After an approval it follows the agent's
// callback, if valid. After a denial the browser is never sent on by itself: the person
// sees that the request was denied, and may follow the agent's callback as a link.
func (it *interaction) decided(approved bool, callback string, rec *pendingRecord) {
	cb, hasCallback := validCallback(callback, rec)
	if approved {
		if hasCallback {
			it.redirect(cb)
			return
		}
		it.render(http.StatusOK, "done", pageData{Title: "Access approved", Message: "The agent can now continue."}, "")
		return
	}
	d := pageData{Title: "Request denied", Message: "The agent was told that you said no."}
	if hasCallback {
		d.Link, d.LinkText = cb, "Return to the application"
	}
	it.render(http.StatusOK, "done", d, "")
}

// ask posts the user's clarification question (draft-hardt-aauth §11.4).
func (it *interaction) ask(code, callback string, rec pendingRecord, question string) {
	h := it.h
	view := h.consentView(rec)
	switch {
	case !view.CanAsk:
		it.showRequest(code, callback, rec, "You cannot ask this agent a question now.", http.StatusBadRequest)
		return
	case question == "":
		it.showRequest(code, callback, rec, "Type a question first.", http.StatusBadRequest)
		return
	case utf8.RuneCountInString(question) > maxQuestionChars || !utf8.ValidString(question):
		it.showRequest(code, callback, rec, "The question is too long (at most 500 characters).", http.StatusBadRequest)
		return
	}
	now := h.now()
	_, err := h.consent.update(it.r.Context(), rec.ID, func(p *pendingRecord) error {
		if p.Status != statusPending || p.expired(now) {
			return errNoLongerPending
		}
		if p.waitingQuestion() != "" || p.questionsAsked() >= MaxClarificationRounds {
			return errors.New("cannot ask now")
		}
		p.Exchange = append(p.Exchange, exchange{Question: question, Asked: now.Unix()})
		return nil
	})
	switch {
	case errors.Is(err, errNoLongerPending):
		it.errorPage(http.StatusGone, "Already decided", "This request has already been approved or denied, or it expired.")
		return
	case err != nil && err.Error() == "cannot ask now":
		it.showRequest(code, callback, rec, "You cannot ask this agent a question now.", http.StatusBadRequest)
		return
	case err != nil:
		it.serverError("storing question", err)
		return
	}
	it.redirect(interactURL(code, callback))
}

// ---- remembered decisions page ----

func (it *interaction) grantsPage(msg string, status int) {
	user := it.user()
	if user == "" {
		if it.h.UserFrom != "" || len(it.h.Users) == 0 {
			it.errorPage(http.StatusUnauthorized, "Not signed in", "This server could not tell who you are.")
			return
		}
		it.render(http.StatusOK, "login", pageData{Title: "Sign in", Next: "grants"}, "")
		return
	}
	gs, err := it.h.consent.listGrants(it.r.Context(), user, it.h.now())
	if err != nil {
		it.serverError("listing grants", err)
		return
	}
	d := pageData{Title: "Your remembered decisions", Message: msg}
	for _, g := range gs {
		d.Grants = append(d.Grants, grantView{ID: g.ID, Agent: g.Agent, Resource: g.Resource, Scopes: g.Scopes,
			Expires: time.Unix(g.Expires, 0).UTC().Format("2 Jan 2006")})
	}
	it.render(status, "grants", d, "")
}

func (it *interaction) revokeOwn(id string) {
	user := it.user()
	if user == "" {
		it.errorPage(http.StatusUnauthorized, "Signed out", "Your session ended. Sign in again.")
		return
	}
	ok, err := it.h.consent.revokeGrant(it.r.Context(), id, user)
	if err != nil {
		it.serverError("revoking grant", err)
		return
	}
	if !ok {
		it.grantsPage("That decision was not found; it may have expired or been revoked already.", http.StatusNotFound)
		return
	}
	it.h.logger.Info("remembered grant revoked by its user", zap.String("user", user), zap.String("grant", id))
	it.grantsPage("The decision was revoked. The agent will have to ask again.", http.StatusOK)
}

// humanDuration renders a remember_for duration for the page.
func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= 2*time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d >= 2*time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}
