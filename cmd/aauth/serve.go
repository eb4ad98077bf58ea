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

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", serveUsage, stderr)
	keyFile := fs.String("key", "", "agent private JWK file (required)")
	id := fs.String("id", "", "agent identifier, e.g. https://agent.example (required)")
	listen := fs.String("listen", "", "listen address (default: -id's host:port)")
	name := fs.String("name", "", "client_name published in the metadata")
	secret := fs.String("delegate-secret", "", "enable POST /delegate/token with this bearer secret (default $"+envDelegateSecret+")")
	lifetime := fs.Duration("token-lifetime", agent.DefaultTokenLifetime, "lifetime of delegate agent tokens")
	clarification := fs.Bool("clarification", false, "publish clarification_supported: true")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM)")
	tlsKey := fs.String("tls-key", "", "private key for -tls-cert (PEM)")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "serve", "unexpected argument %q", pos[0])
	}
	if *keyFile == "" || *id == "" {
		return usageError(stderr, "serve", "-key and -id are required")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usageError(stderr, "serve", "-tls-cert and -tls-key go together")
	}
	if *lifetime < time.Second {
		return usageError(stderr, "serve", "-token-lifetime must be at least 1s")
	}
	if *secret == "" {
		*secret = os.Getenv(envDelegateSecret)
	}
	signer, err := loadSigner(*keyFile)
	if err != nil {
		return failf(stderr, "serve", "%v", err)
	}
	srvAgent := &agent.Server{
		Signer:                 signer,
		ID:                     *id,
		ClientName:             *name,
		DelegateSecret:         *secret,
		TokenLifetime:          *lifetime,
		ClarificationSupported: *clarification,
	}
	if err := srvAgent.Validate(); err != nil {
		return usageError(stderr, "serve", "%v", err)
	}
	addr := *listen
	if addr == "" {
		if addr, err = defaultListen(*id); err != nil {
			return usageError(stderr, "serve", "%v", err)
		}
	}

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
		if *tlsCert != "" {
			errc <- srv.ServeTLS(ln, *tlsCert, *tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	scheme := "http"
	if *tlsCert != "" {
		scheme = "https"
	}
	delegate := "disabled"
	if *secret != "" {
		delegate = "enabled"
	}
	fmt.Fprintf(logw, "aauth serve: agent %s (key %s, thumbprint %s) listening on %s://%s; delegate tokens %s\n",
		*id, signer.Public.KID, signer.Public.Thumbprint, scheme, ln.Addr(), delegate)

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
