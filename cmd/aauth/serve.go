package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
)

const serveUsage = `usage: aauth serve -key agent.jwk -id URL [-listen ADDR] [-name NAME]
                   [-delegate-secret S] [-token-lifetime 1h] [-clarification]
                   [-tls-cert FILE -tls-key FILE]

Runs an agent server for the agent identified by -id (an https origin, or
http://127.0.0.1:PORT for local tests). It serves
  GET  /.well-known/aauth-agent.json (and /.well-known/aauth-agent)  agent metadata
  GET  /jwks.json                                                   the public key
  POST /delegate/token   agent tokens for delegates, only when a delegate secret is set
                         (callers send "Authorization: Bearer <secret>")
The listen address defaults to -id's host and port. Prefer the environment variable
AAUTH_DELEGATE_SECRET over -delegate-secret, which other local users can see in the
process list. Stops gracefully on SIGINT or SIGTERM.
`

// serveOptions are the flags of the serve command.
type serveOptions struct {
	keyFile, id, listen, name, secret string
	lifetime                          time.Duration
	clarification                     bool
	tlsCert, tlsKey                   string
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseServeFlags(args, stderr)
	if !ok {
		return code
	}
	srvAgent, addr, code, ok := newServeAgent(o, stderr)
	if !ok {
		return code
	}
	return runAgentServer(ctx, srvAgent, o, addr, stderr)
}

// parseServeFlags parses and checks the serve command line; the delegate secret falls back
// to the environment. When ok is false, code is the exit status to return.
func parseServeFlags(args []string, stderr io.Writer) (o *serveOptions, code int, ok bool) {
	o = &serveOptions{}
	fs := newFlags("serve", serveUsage, stderr)
	var creds credFlags
	creds.add(fs, "agent private JWK file (required)", "agent identifier, e.g. https://agent.example (required)", false, false)
	fs.StringVar(&o.listen, "listen", "", "listen address (default: -id's host:port)")
	fs.StringVar(&o.name, "name", "", "client_name published in the metadata")
	fs.StringVar(&o.secret, "delegate-secret", "", "enable POST /delegate/token with this bearer secret (default $"+envDelegateSecret+")")
	fs.DurationVar(&o.lifetime, "token-lifetime", agent.DefaultTokenLifetime, "lifetime of delegate agent tokens")
	fs.BoolVar(&o.clarification, "clarification", false, "publish clarification_supported: true")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key for -tls-cert (PEM)")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return nil, code, false
	}
	if len(pos) > 0 {
		return nil, usageError(stderr, "serve", "unexpected argument %q", pos[0]), false
	}
	if err := creds.resolve(fs); err != nil {
		return nil, usageError(stderr, "serve", "%v", err), false
	}
	o.keyFile, o.id = creds.key, creds.id
	if o.keyFile == "" || o.id == "" {
		return nil, usageError(stderr, "serve", "-key and -id are required"), false
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, usageError(stderr, "serve", "-tls-cert and -tls-key go together"), false
	}
	if o.lifetime < time.Second {
		return nil, usageError(stderr, "serve", "-token-lifetime must be at least 1s"), false
	}
	if o.secret == "" {
		o.secret = os.Getenv(envDelegateSecret)
	}
	return o, 0, true
}

// newServeAgent loads the key and builds the agent server, and works out the listen
// address. When ok is false, code is the exit status to return.
func newServeAgent(o *serveOptions, stderr io.Writer) (srvAgent *agent.Server, addr string, code int, ok bool) {
	signer, err := loadSigner(o.keyFile)
	if err != nil {
		return nil, "", failf(stderr, "serve", "%v", err), false
	}
	srvAgent = &agent.Server{
		Signer:                 signer,
		ID:                     o.id,
		ClientName:             o.name,
		DelegateSecret:         o.secret,
		TokenLifetime:          o.lifetime,
		ClarificationSupported: o.clarification,
	}
	if err := srvAgent.Validate(); err != nil {
		return nil, "", usageError(stderr, "serve", "%v", err), false
	}
	addr = o.listen
	if addr == "" {
		if addr, err = defaultListen(o.id); err != nil {
			return nil, "", usageError(stderr, "serve", "%v", err), false
		}
	}
	return srvAgent, addr, 0, true
}

// runAgentServer serves srvAgent on addr until the server fails or ctx ends or SIGINT or
// SIGTERM arrives, then shuts down gracefully, and returns the exit status.
func runAgentServer(ctx context.Context, srvAgent *agent.Server, o *serveOptions, addr string, stderr io.Writer) int {
	// Handler goroutines log concurrently; keep their lines whole.
	logw := &lockedWriter{w: stderr}
	srv := &http.Server{
		Handler:           logRequests(srvAgent, logw),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return failf(stderr, "serve", "%v", err)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			errc <- srv.ServeTLS(ln, o.tlsCert, o.tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	delegate := "disabled"
	if o.secret != "" {
		delegate = "enabled"
	}
	fmt.Fprintf(logw, "aauth serve: agent %s (key %s, thumbprint %s) listening on %s://%s; delegate tokens %s\n",
		o.id, srvAgent.Signer.Public.KID, srvAgent.Signer.Public.Thumbprint, scheme, ln.Addr(), delegate)

	select {
	case err := <-errc:
		return failf(logw, "serve", "%v", err)
	case <-ctx.Done():
	}
	fmt.Fprintln(logw, "aauth serve: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return failf(logw, "serve", "shutdown: %v", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return failf(logw, "serve", "%v", err)
	}
	return exitOK
}

// defaultListen derives host:port from the agent id, so a dev agent started as
// -id http://127.0.0.1:8001 listens where its own metadata says it lives.
func defaultListen(id string) (string, error) {
	u, err := url.Parse(id)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("cannot derive a listen address from -id %q; pass -listen", id)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// logRequests writes one line per request (method, path, status, peer); never headers,
// which carry the delegate secret.
func logRequests(h http.Handler, w io.Writer) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: rw, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		fmt.Fprintf(w, "%s %s %q %d\n", r.RemoteAddr, r.Method, r.URL.Path, rec.status)
	})
}
