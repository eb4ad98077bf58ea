package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/agent"
	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// refusedPhases measure requests the gateway must refuse before any signature check,
// each against a static 401 fed the very same request bytes (the cost of reading the
// request and answering at all).
func (b *bench) refusedPhases(ctx context.Context) error {
	garbage := fmt.Appendf(nil, "GET /hwk/garbage HTTP/1.1\r\nHost: %s\r\n"+
		"Signature-Input: sig=(\"@method\" \"@authority\");created=notanumber\r\n"+
		"Signature: sig=:AAAA:\r\nSignature-Key: sig=(scheme=hwk kty=\"OKP\"\r\n\r\n", b.gw)
	s, err := keys.Generate(keys.AlgEd25519, "")
	if err != nil {
		return err
	}
	expired, err := parallel(256, func(i int) ([]byte, error) {
		return signedGET(b.gw, b.path("/hwk/expired/"), agent.HWK(s), time.Now().Add(-10*time.Minute))
	})
	if err != nil {
		return err
	}
	rows := []struct {
		row  *Row
		addr string
		gen  source
	}{
		{&Row{Name: rowStatic, What: "a static 401 (respond), fed the refused-garbage bytes"}, b.staticSite, fromSlice([][]byte{garbage})},
		{&Row{Name: rowGarbage, Base: rowStatic, What: "hwk route, unparsable Signature-Input"}, b.gw, fromSlice([][]byte{garbage})},
		{&Row{Name: rowStaticSigned, What: "a static 401 (respond), fed the refused-expired bytes"}, b.staticSite, fromSlice(expired)},
		{&Row{Name: rowExpired, Base: rowStaticSigned, What: "hwk route, valid signature, created 10 minutes ago"}, b.gw, fromSlice(expired)},
	}
	var phs []phase
	for _, r := range rows {
		b.rep.add(r.row)
		phs = append(phs, phase{row: r.row, addr: r.addr, want: http.StatusUnauthorized, conc: b.cfg.concurrency, warm: 4 * b.cfg.concurrency, gen: r.gen})
	}
	return b.runPhases(ctx, phs...)
}

// hostilePhase sends cfg.hostile hwk requests, each with a new random 32-byte public key
// and a random signature (refused: the key is not a curve point, or the signature does
// not verify), and compares Caddy's memory before and after, each after a GC.
func (b *bench) hostilePhase(ctx context.Context) error {
	row := &Row{Name: rowHostile, Base: rowStaticSigned, What: fmt.Sprintf("hwk route, %d requests, each a new random key and signature", b.cfg.hostile)}
	b.rep.add(row)
	gen, err := b.hostileSource()
	if err != nil {
		return err
	}
	before, err := b.memory()
	if err != nil {
		return err
	}
	ph := phase{row: row, addr: b.gw, want: http.StatusUnauthorized, conc: b.cfg.concurrency, total: b.cfg.hostile, gen: gen}
	if err := b.runPhase(ctx, ph); err != nil {
		return err
	}
	after, err := b.memory()
	if err != nil {
		return err
	}
	m := &b.rep.Memory
	m.Measured = true
	m.IdleRSS, m.IdleHeap = before.rss, before.heap
	m.AfterRSS, m.AfterHeap, m.PeakRSS = after.rss, after.heap, after.peak
	return nil
}

type memSnap struct {
	rss, peak int64
	heap      uint64
}

// memory is Caddy's RSS and Go heap in use right after a forced GC.
func (b *bench) memory() (memSnap, error) {
	if err := b.caddy.gc(); err != nil {
		return memSnap{}, err
	}
	ms, err := b.caddy.memStats()
	if err != nil {
		return memSnap{}, err
	}
	rss, peak, err := b.caddy.rss()
	return memSnap{rss: rss, peak: peak, heap: ms.HeapInuse}, err
}

// hostileSource writes a template hwk request with a new key (x), signature and the
// current created time into each request.
func (b *bench) hostileSource() (source, error) {
	s, err := keys.Generate(keys.AlgEd25519, "")
	if err != nil {
		return nil, err
	}
	tmpl, err := signedGET(b.gw, "/hwk/hostile", agent.HWK(s), time.Now())
	if err != nil {
		return nil, err
	}
	x := bytes.Index(tmpl, []byte(s.Public.Members()["x"].(string)))
	sig := bytes.Index(tmpl, []byte("sig=:")) + len("sig=:")
	created := bytes.Index(tmpl, []byte("created=")) + len("created=")
	if x < 0 || sig < len("sig=:") || created < len("created=") {
		return nil, fmt.Errorf("unexpected hwk request layout:\n%s", tmpl)
	}
	rngs := make([]*rand.ChaCha8, b.cfg.concurrency)
	for i := range rngs {
		var seed [32]byte
		seed[0], seed[1] = byte(i), byte(i>>8)
		seed[2] = byte(time.Now().UnixNano())
		rngs[i] = rand.NewChaCha8(seed)
	}
	return func(w, _ int, buf []byte) []byte {
		buf = append(buf, tmpl...)
		var rnd [64]byte
		_, _ = rngs[w].Read(rnd[:])
		base64.RawURLEncoding.Encode(buf[x:x+43], rnd[:32])
		_, _ = rngs[w].Read(rnd[:])
		base64.RawURLEncoding.Encode(buf[sig:sig+86], rnd[:])
		copy(buf[created:created+10], strconv.FormatInt(time.Now().Unix(), 10))
		return buf
	}, nil
}
