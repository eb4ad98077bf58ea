package integration

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// screenshotPath is where TestConsentFlowInBrowser writes the README's picture of the
// consent page when run with -update (relative to this package's directory).
const screenshotPath = "testdata/consent-page.png"

const viewportW, viewportH = 1000, 900

// chromiumPath finds Debian's chromium, or fails the test saying why (skips it under
// -short): a missing browser must not pass silently in CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if fi, err := os.Stat("/usr/bin/chromium"); err == nil && !fi.IsDir() {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	msg := "the browser test needs Chromium, found neither at /usr/bin/chromium nor as `chromium` on PATH " +
		"(install the Debian package chromium, or run .ci/run)"
	if testing.Short() {
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
}

// headlessChromium starts a fresh headless Chromium (its own profile under t.TempDir())
// and returns a tab context bounded by limit. Everything is shut down by t.Cleanup.
func headlessChromium(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	exe := chromiumPath(t)
	profile := t.TempDir() // registered first, so removed after the browser has exited
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(viewportW, viewportH),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTime := context.WithTimeout(ctx, limit)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	// Start the browser now, so a broken installation fails here with a clear message.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewportW, viewportH)); err != nil {
		t.Fatalf("starting headless Chromium (%s): %v", exe, err)
	}
	return ctx
}

func browserText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("reading %s: %v", sel, err)
	}
	return s
}

func TestConsentFlowInBrowser(t *testing.T) {
	chromiumPath(t) // skip early, before Caddy is configured
	const purpose = "Sync your notes <script>alert(1)</script> nightly"
	env := startConsent(t, consentOptions{})

	hook, pending := pendingSink()
	ag := newConsentAgent(env.identity(), purpose, hook)
	out := ag.start(env.apiID + "/data/report")

	pe := waitPending(t, pending, 15*time.Second)
	link := agent.InteractionURL(pe.InteractionEndpoint, pe.Code)
	if want := env.authID + "/interact?code=" + pe.Code; link != want {
		t.Fatalf("interaction URL %q, want %q", link, want)
	}

	ctx := headlessChromium(t, 60*time.Second)

	// The link opens the sign-in page, which already names the agent and the resource.
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(link))
	if err != nil {
		t.Fatalf("opening %s: %v", link, err)
	}
	if resp.Status != 200 {
		t.Fatalf("login page status %d", resp.Status)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#username"))); err != nil {
		t.Fatal(err)
	}
	if s := browserText(t, ctx, "main"); !strings.Contains(s, env.agentSrv.id) || !strings.Contains(s, env.apiID) {
		t.Fatalf("login page does not name the agent and the resource:\n%s", s)
	}

	// Sign in: the POST redirects (303) back to the code's page, now the consent page.
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS("#username"), "alice"),
		chromedp.SendKeys(chromedp.CSS("#password"), alicePassword),
	); err != nil {
		t.Fatal(err)
	}
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[value="login"]`)))
	if err != nil {
		t.Fatalf("signing in: %v", err)
	}
	if resp.Status != 200 || !strings.Contains(resp.URL, "/interact?code="+pe.Code) {
		t.Fatalf("after sign-in: %d %s", resp.Status, resp.URL)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`button[value="approve"]`))); err != nil {
		t.Fatal(err)
	}
	title, _ := chromedp.Run(ctx, chromedp.Title())
	if !strings.HasPrefix(title, "Allow access?") {
		t.Fatalf("consent page title %q", title)
	}
	text := browserText(t, ctx, "body")
	for _, want := range []string{
		"Signed in as alice", env.agentSrv.id, "Integration agent", env.apiID,
		"data.write", consentScopeDesc, "Signed with its published key (jwks_uri)",
		env.agentSrv.signer.Public.Thumbprint,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the consent page does not show %q:\n%s", want, text)
		}
	}
	// The purpose is shown as text, with its markup inert.
	if got := browserText(t, ctx, "blockquote.agent-text"); got != purpose {
		t.Errorf("purpose shown as %q, want the literal text %q", got, purpose)
	}
	doc, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(doc, "<script>alert(1)</script>") || !strings.Contains(doc, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the purpose is not escaped in the page:\n%s", doc)
	}
	scripts, err := chromedp.Run(ctx, chromedp.Evaluate[int]("document.scripts.length"))
	if err != nil || scripts != 0 {
		t.Errorf("the consent page has %d script elements (%v)", scripts, err)
	}

	// A picture of the consent page for the docs.
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != viewportW || b.Dy() < 400 {
		t.Errorf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	// The README's picture is refreshed with -update; other runs keep theirs in a temp dir.
	shotPath := filepath.Join(t.TempDir(), "consent-page.png")
	if *update {
		shotPath = screenshotPath
		if err := os.MkdirAll(filepath.Dir(shotPath), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(shotPath, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("consent page screenshot: %s (%dx%d)", shotPath, img.Bounds().Dx(), img.Bounds().Dy())

	// The same page fetched by a plain HTTP client signed in with its own cookie jar:
	// no caching, no framing, the purpose escaped.
	p, err := newWebUser(env.authID).login(pe.Code, "alice", alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	checkPageSecurity(t, "consent page", p.header)
	if strings.Contains(p.body, "<script>alert(1)</script>") || !strings.Contains(p.body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the purpose is not escaped in the HTML as served:\n%s", p.body)
	}
	if ct := p.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}

	// Approve in the browser.
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[value="approve"]`)))
	if err != nil {
		t.Fatalf("approving: %v", err)
	}
	if resp.Status != 200 {
		t.Fatalf("after approval: status %d", resp.Status)
	}
	if h := browserText(t, ctx, "h1"); h != "Access approved" {
		t.Fatalf("final page heading %q", h)
	}

	// The agent's request completes with the user's authority.
	o := waitOutcome(t, out, 30*time.Second)
	if o.err != nil {
		var pe *agent.PendingError
		if errors.As(o.err, &pe) {
			t.Fatalf("the agent stopped at the 202: %v", o.err)
		}
		t.Fatalf("the agent's request failed: %v", o.err)
	}
	r := o.res.mustStatus(t, 200)
	if r.backendHeader("X-Aauth-Subject") != "alice" || r.backendHeader("X-Aauth-Level") != "authorized" ||
		r.backendHeader("X-Aauth-Scope") != "data.write" || r.backendHeader("X-Aauth-Agent") != env.agentSrv.id ||
		r.echo.Path != "/data/report" {
		t.Fatalf("backend saw %s %v", r.echo.Path, r.echo.Header)
	}
	ct, ok := ag.cache.Get(env.apiID, ag.cred.Signer.Public.Thumbprint)
	if !ok {
		t.Fatal("no auth token in the agent's cache")
	}
	if sub := tokenSubject(t, ct.Token); sub != "alice" {
		t.Fatalf("cached token sub %q", sub)
	}
	if ct.Scope != "data.write" || ct.Issuer != env.authID {
		t.Fatalf("cached token %+v", ct)
	}
}
