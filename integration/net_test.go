package integration

import (
	"io"
	"net"
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
