package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keystore"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// local is an HTTP server of the benchmark process on a loopback port.
type local struct {
	srv  *http.Server
	addr string // host:port
	id   string // http://host:port
}

func serve(h http.Handler) (*local, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &local{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String()}
	l.id = "http://" + l.addr
	go func() { _ = l.srv.Serve(ln) }()
	return l, nil
}

func (l *local) close() { _ = l.srv.Close() }

// envRunUpstream makes this binary run as the upstream, listening on its value.
const envRunUpstream = "AAUTH_BENCH_RUN_UPSTREAM"

// upstreamProc is the backend every route proxies to: an unmodified server answering a
// few bytes, so the routes differ only by what the gateway does. It is a process of its
// own (this program re-executed), as wrk's backend would be: in the benchmark process its
// goroutines would share a scheduler with the load generator and delay the latencies it
// measures.
type upstreamProc struct {
	addr string
	cmd  *exec.Cmd
	done chan error
}

// startUpstream starts the upstream process listening on addr.
func startUpstream(addr string) (*upstreamProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	u := &upstreamProc{addr: addr, done: make(chan error, 1)}
	u.cmd = exec.Command(self)
	u.cmd.Env = append(os.Environ(), envRunUpstream+"="+u.addr)
	u.cmd.Stderr = os.Stderr
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the benchmark
	if err := u.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { u.done <- u.cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-u.done:
			return nil, fmt.Errorf("the upstream process exited: %v", err)
		default:
		}
		if c, err := net.Dial("tcp", u.addr); err == nil {
			_ = c.Close()
			return u, nil
		}
	}
	u.close()
	return nil, fmt.Errorf("the upstream process did not listen on %s within 10s", u.addr)
}

func (u *upstreamProc) close() {
	_ = u.cmd.Process.Kill()
	<-u.done
}

// runUpstream serves the upstream on addr until killed; its exit code.
func runUpstream(addr string) int {
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})}
	fmt.Fprintln(os.Stderr, "bench upstream:", srv.ListenAndServe())
	return 1
}

// localAgent is a jwks_uri agent whose metadata and JWKS the benchmark serves
// (agent.Server), each on its own port: an agent identifier is an origin.
type localAgent struct {
	*local
	cred *agent.Credential
}

func startAgent(name string) (*localAgent, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s, err := keys.Generate(keys.AlgEd25519, "bench-agent-key")
	if err != nil {
		return nil, err
	}
	id := "http://" + ln.Addr().String()
	h := &agent.Server{Signer: s, ID: id, ClientName: name}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	l := &local{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr().String(), id: id}
	go func() { _ = l.srv.Serve(ln) }()
	return &localAgent{local: l, cred: agent.JWKSURI(s, id)}, nil
}

func startAgents(n int, prefix string) ([]*localAgent, error) {
	out := make([]*localAgent, 0, n)
	for i := range n {
		a, err := startAgent(fmt.Sprintf("%s %d", prefix, i))
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// localIssuer is a second auth server the token routes trust (trust_issuer): the
// benchmark signs auth tokens with its key, so 100,000 distinct tokens cost no token
// requests. Only its metadata and JWKS are served, which is all a resource fetches
// (draft-hardt-aauth, auth server metadata).
type localIssuer struct {
	*local
	signer *keys.Signer
}

func startIssuer() (*localIssuer, error) {
	s, err := keys.Generate(keys.AlgEd25519, "bench-issuer-key")
	if err != nil {
		return nil, err
	}
	iss := &localIssuer{signer: s}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/aauth-issuer.json", func(w http.ResponseWriter, r *http.Request) {
		writeDoc(w, wire.AuthServerMetadata{Issuer: iss.id, TokenEndpoint: iss.id + "/token",
			InteractionEndpoint: iss.id + "/interact", JWKSURI: iss.id + "/jwks.json"})
	})
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write(keystore.JWKS(s.Public))
	})
	iss.local, err = serve(mux)
	return iss, err
}

func writeDoc(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=3600")
	_ = json.NewEncoder(w).Encode(v)
}
