package integration

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (c *countingListener) accepted() int64 { return c.n.Load() }

// listenCounting listens on addr and counts accepted connections; nil when the address
// cannot be bound (then the caller's check is skipped for that address).
func listenCounting(t *testing.T, addr string) *countingListener {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Logf("cannot listen on %s (%v): the connection count check is skipped", addr, err)
		return nil
	}
	c := &countingListener{Listener: ln}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

func ioNop(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }

// countingServer answers 404 to everything and counts requests: a stand-in for a host
// that must never be contacted.
type countingServer struct {
	*httptest.Server
	hits atomic.Int64
}

func newCountingServer(t *testing.T) *countingServer {
	c := &countingServer{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.hits.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
