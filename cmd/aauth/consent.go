package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

// progressEvery is how often the wait is reported when stderr is not a terminal.
var progressEvery = 10 * time.Second

// promptInput is where a clarification answer is read from, and whether it is a
// terminal the user can type into. Tests replace it.
var promptInput = func() (io.Reader, bool) { return os.Stdin, isTerminal(os.Stdin) }

// openBrowser opens url in the desktop's browser, best effort. Tests replace it.
var openBrowser = func(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// isTerminal reports whether w is a character device (a terminal), without a
// dependency on a terminal library.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// consentUI shows the user what to do while the CLI waits for consent: the
// interaction URL and code in a box, a QR code of the URL, and the time waited. All
// writes to stderr go through mu, because the progress ticker runs concurrently.
type consentUI struct {
	w       io.Writer
	tty     bool          // stderr is a terminal: one progress line rewritten in place
	noQR    bool          // -no-qr (a QR code is drawn only on a terminal anyway)
	limit   time.Duration // -consent-timeout: the time left is shown
	open    bool          // -open
	answer  string        // -answer
	in      io.Reader     // where prompted answers are read
	inTTY   bool          // in is a terminal: prompt for answers
	lines   *bufio.Reader
	vlog    func(string, ...any)
	verbose bool // vlog prints: its lines must not run into the progress line
	// onStart and onEnd bracket the wait (the CLI pauses its HTTP timeout meanwhile).
	onStart, onEnd func()

	mu        sync.Mutex
	start     time.Time
	note      string // shown after the time waited
	lineOpen  bool   // a progress line without newline is on screen (tty)
	prompting bool   // a clarification prompt owns the terminal
	stop      chan struct{}
	done      chan struct{}
}

// poller builds the Poller for cred with the UI's callbacks.
func (u *consentUI) poller(cred *agent.Credential, tr *agent.Transport, wait, limit time.Duration) *agent.Poller {
	p := &agent.Poller{
		Credential: cred, Dev: tr.Dev, Dictionary: tr.Dictionary, StdBase64: tr.StdBase64,
		Discovery: tr.Discovery, Wait: wait, MaxDuration: limit, Logf: u.logf,
		OnPending: u.pending, OnProgress: u.progress,
	}
	if u.answer != "" {
		p.Clarify = u.fixedAnswer
	} else if u.inTTY {
		p.Clarify = u.prompt
	}
	return p
}

// logf is the poller's log: -v lines, each on a line of its own.
func (u *consentUI) logf(format string, a ...any) {
	if !u.verbose {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.breakLineLocked()
	u.vlog(format, a...)
}

// await wraps Poller.Await for Transport.AwaitToken: the wait is bracketed by onStart
// and onEnd, and the progress display is ended whatever the outcome.
func (u *consentUI) await(p *agent.Poller) func(context.Context, *agent.PendingError) (string, error) {
	return func(ctx context.Context, pe *agent.PendingError) (string, error) {
		if u.onStart != nil {
			u.onStart()
		}
		tok, err := p.Await(ctx, pe)
		u.finish(err == nil)
		if u.onEnd != nil {
			u.onEnd()
		}
		return tok, err
	}
}

// awaitResponse wraps Poller.AwaitResponse for Transport.AwaitResponse (a request the
// resource deferred itself) as await does Poller.Await.
func (u *consentUI) awaitResponse(p *agent.Poller) func(context.Context, *agent.PendingError, *agent.Credential) (*http.Response, error) {
	return func(ctx context.Context, pe *agent.PendingError, cred *agent.Credential) (*http.Response, error) {
		if u.onStart != nil {
			u.onStart()
		}
		resp, err := p.AwaitResponse(ctx, pe, cred)
		msg := ""
		if err == nil {
			msg = "the resource answered " + resp.Status
		}
		u.finishWith(msg)
		if u.onEnd != nil {
			u.onEnd()
		}
		return resp, err
	}
}

// pending is Poller.OnPending: show where to approve, then start the progress display.
func (u *consentUI) pending(pe *agent.PendingError) {
	u.mu.Lock()
	defer u.mu.Unlock()
	link := agent.InteractionURL(pe.InteractionEndpoint, pe.Code)
	who, where := "The auth server", "Auth server: "+pe.AuthServer
	if pe.AtResource {
		who, where = "The resource", "Pending at: "+pe.Origin
	}
	var lines []string
	switch {
	case pe.Require == agent.RequireApproval || pe.Code == "":
		lines = []string{who + " is getting approval for this request.", "", "  " + where}
	case link != "":
		lines = []string{"Approve this request in your browser:", "", "  " + link, "", "  Code: " + agent.FormatCode(pe.Code)}
	default:
		lines = []string{"Approve this request at " + strings.ToLower(who) + ":", "", "  " + where, "", "  Code: " + agent.FormatCode(pe.Code)}
	}
	if pe.Resource != "" {
		lines = append(lines, "", "  Resource: "+pe.Resource)
	}
	fmt.Fprint(u.w, box(lines))
	if link != "" && !u.noQR && u.tty {
		if q, err := qrcode.New(link, qrcode.Medium); err == nil {
			fmt.Fprint(u.w, q.ToSmallString(false))
		} else {
			u.vlog("no QR code: %v", err)
		}
	}
	if link != "" && u.open {
		if err := openBrowser(link); err != nil {
			fmt.Fprintf(u.w, "aauth: could not open a browser (%v); open the link above\n", err)
		}
	}
	u.start = time.Now()
	u.stop, u.done = make(chan struct{}), make(chan struct{})
	every := progressEvery
	if u.tty {
		every = time.Second
		u.drawLocked()
	} else {
		fmt.Fprintln(u.w, "aauth: "+u.waitingLocked(true))
	}
	go u.tick(every, u.stop, u.done)
}

func (u *consentUI) tick(every time.Duration, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			u.mu.Lock()
			if !u.prompting {
				u.drawLocked()
			}
			u.mu.Unlock()
		}
	}
}

// waitingLocked is the waiting line: the time waited, the time left until
// -consent-timeout and, on a terminal or in the first line, how to cancel.
func (u *consentUI) waitingLocked(first bool) string {
	waited := time.Since(u.start).Truncate(time.Second)
	s := fmt.Sprintf("waiting for approval… %s", waited)
	if u.limit > 0 {
		s += ", " + shortDuration(max(0, u.limit-waited)) + " left"
	}
	if u.tty || first {
		s += " (Ctrl-C to cancel)"
	}
	if u.note != "" {
		s += " (" + u.note + ")"
	}
	return s
}

// shortDuration prints whole seconds without trailing zero units: 10m, 1h30m, 9m48s.
func shortDuration(d time.Duration) string {
	s := d.Truncate(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// drawLocked shows the waiting line: rewritten in place on a terminal, else one line.
func (u *consentUI) drawLocked() {
	s := u.waitingLocked(false)
	if u.tty {
		fmt.Fprintf(u.w, "\r\033[K%s", s)
		u.lineOpen = true
		return
	}
	fmt.Fprintln(u.w, "aauth: "+s)
}

// breakLineLocked ends an open progress line so a message can follow.
func (u *consentUI) breakLineLocked() {
	if u.lineOpen {
		fmt.Fprintln(u.w)
		u.lineOpen = false
	}
}

// progress is Poller.OnProgress.
func (u *consentUI) progress(status string, _ time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case status == agent.ProgressBackoff:
		u.note = "the auth server is busy; retrying"
	case status == agent.ProgressUnreachable:
		u.note = "the auth server cannot be reached; retrying"
	case status == agent.ProgressPending:
		u.note = ""
	case status == agent.ProgressAnswered:
		u.breakLineLocked()
		fmt.Fprintln(u.w, "aauth: answer sent; waiting for the user")
	case strings.HasPrefix(status, agent.ProgressClarification):
		u.breakLineLocked()
		q := strings.TrimPrefix(status, agent.ProgressClarification)
		fmt.Fprintf(u.w, "aauth: the user asks: %s\naauth: (not answered; pass -answer TEXT to answer)\n", q)
	}
}

// fixedAnswer answers every question with -answer.
func (u *consentUI) fixedAnswer(_ context.Context, q string) (string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.breakLineLocked()
	fmt.Fprintf(u.w, "aauth: the user asks: %s\naauth: answering: %s\n", q, u.answer)
	return u.answer, nil
}

// prompt asks the person at the terminal to answer a question. An empty line leaves
// the question unanswered.
func (u *consentUI) prompt(ctx context.Context, q string) (string, error) {
	if u.lines == nil {
		u.lines = bufio.NewReader(u.in)
	}
	lines := u.lines
	u.mu.Lock()
	u.prompting = true
	u.breakLineLocked()
	fmt.Fprintf(u.w, "The user asks: %s\nYour answer: ", q)
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.prompting = false
		u.mu.Unlock()
	}()
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		s, err := lines.ReadString('\n')
		if err == io.EOF && s != "" {
			err = nil
		}
		ch <- line{strings.TrimSpace(s), err}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case l := <-ch:
		if l.err == io.EOF {
			return "", nil
		}
		return l.s, l.err
	}
}

// finish stops the progress display, saying so when the user approved.
func (u *consentUI) finish(approved bool) {
	msg := ""
	if approved {
		msg = "approved"
	}
	u.finishWith(msg)
}

// finishWith stops the progress display and, unless msg is empty, says msg and the time
// waited.
func (u *consentUI) finishWith(msg string) {
	u.mu.Lock()
	stop, done := u.stop, u.done
	u.stop = nil
	u.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-done
	u.mu.Lock()
	defer u.mu.Unlock()
	u.breakLineLocked()
	if msg != "" {
		fmt.Fprintf(u.w, "aauth: %s after %s\n", msg, time.Since(u.start).Truncate(time.Second))
	}
}

// box frames lines for the terminal.
func box(lines []string) string {
	width := 0
	for _, l := range lines {
		width = max(width, utf8.RuneCountInString(l))
	}
	var b strings.Builder
	bar := strings.Repeat("─", width+2)
	b.WriteString("┌" + bar + "┐\n")
	for _, l := range lines {
		b.WriteString("│ " + l + strings.Repeat(" ", width-utf8.RuneCountInString(l)) + " │\n")
	}
	b.WriteString("└" + bar + "┘\n")
	return b.String()
}
