package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// source gives the bytes of request i of a round; worker w may build them in buf.
type source func(w, i int, buf []byte) []byte

// fromSlice sends requests signed in advance.
func fromSlice(reqs [][]byte) source {
	return func(_, i int, _ []byte) []byte { return reqs[i%len(reqs)] }
}

// answer is what a check of a response sees.
type answer struct {
	i      int
	status int
	header http.Header
	body   []byte
}

// sample is what one round measured.
type sample struct {
	n, errs  int64
	firstErr string
	wall     time.Duration
	lat      []int64          // ns per request, write to last byte of the answer
	codes    map[string]int64 // "401 invalid_signature": how many answers had that status and error code
}

// driver keeps one keep-alive HTTP/1.1 connection per worker to one address and sends
// raw request bytes on them, one request in flight per connection (like wrk -c).
type driver struct {
	addr  string
	conns []*conn
}

type conn struct {
	c  net.Conn
	br *bufio.Reader
}

func newDriver(addr string, n int) *driver {
	return &driver{addr: addr, conns: make([]*conn, n)}
}

func (d *driver) close() {
	for _, c := range d.conns {
		if c != nil {
			_ = c.c.Close()
		}
	}
}

func (d *driver) dial(w int) (*conn, error) {
	if c := d.conns[w]; c != nil {
		return c, nil
	}
	c, err := net.DialTimeout("tcp", d.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	d.conns[w] = &conn{c: c, br: bufio.NewReaderSize(c, 16<<10)}
	return d.conns[w], nil
}

func (d *driver) drop(w int) {
	if c := d.conns[w]; c != nil {
		_ = c.c.Close()
		d.conns[w] = nil
	}
}

// run sends total requests from src on every connection at once and checks each answer
// has status want; check, when set, sees every answer too (and may call it an error).
func (d *driver) run(ctx context.Context, total int, src source, want int, check func(answer) error) *sample {
	var next atomic.Int64
	out := make([]*sample, len(d.conns))
	var wg sync.WaitGroup
	start := time.Now()
	for w := range d.conns {
		out[w] = &sample{lat: make([]int64, 0, total/len(d.conns)+1), codes: map[string]int64{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.work(ctx, w, &next, total, src, want, check, out[w])
		}()
	}
	wg.Wait()
	s := &sample{wall: time.Since(start), codes: map[string]int64{}}
	for _, o := range out {
		for k, v := range o.codes {
			s.codes[k] += v
		}
		s.n += o.n
		s.errs += o.errs
		s.lat = append(s.lat, o.lat...)
		if s.firstErr == "" {
			s.firstErr = o.firstErr
		}
	}
	return s
}

func (d *driver) work(ctx context.Context, w int, next *atomic.Int64, total int, src source, want int, check func(answer) error, s *sample) {
	buf := make([]byte, 0, 4096)
	for ctx.Err() == nil {
		i := int(next.Add(1) - 1)
		if i >= total {
			return
		}
		req := src(w, i, buf[:0])
		t0 := time.Now()
		a, err := d.roundTrip(w, req)
		s.lat = append(s.lat, int64(time.Since(t0)))
		s.n++
		if err == nil && a.status >= 400 {
			s.codes[strconv.Itoa(a.status)+" "+errorCode(a.body)]++
		}
		if err == nil && a.status != want {
			err = fmt.Errorf("status %d, want %d: %.200s", a.status, want, a.body)
		}
		if err == nil && check != nil {
			a.i = i
			err = check(a)
		}
		if err != nil {
			s.errs++
			if s.firstErr == "" {
				s.firstErr = err.Error()
			}
		}
	}
}

// errorCode is the "error" and "error_description" members of a JSON error body
// (RFC 6749 §5.2 style): "invalid_signature (created is too old)"; "-" when absent.
func errorCode(body []byte) string {
	code := member(body, "error")
	if code == "" {
		return "-"
	}
	if d := member(body, "error_description"); d != "" {
		return code + " (" + d + ")"
	}
	return code
}

// member is the string member name of a flat JSON object, if short and unescaped.
func member(body []byte, name string) string {
	key := `"` + name + `":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexAny(rest, `"\`)
	if j < 0 || j > 80 {
		return ""
	}
	return string(rest[:j])
}

// roundTrip writes one request and reads its answer (the body up to 64 KiB).
func (d *driver) roundTrip(w int, req []byte) (answer, error) {
	c, err := d.dial(w)
	if err != nil {
		return answer{}, err
	}
	if _, err := c.c.Write(req); err != nil {
		d.drop(w)
		return answer{}, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		d.drop(w)
		return answer{}, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if err != nil || resp.Close {
		d.drop(w)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: body}, err
}
