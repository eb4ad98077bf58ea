package integration

import (
	"net/http"
	"sync"
	"testing"
)

// TestClusterAdmissionOnFileStorage: two Caddy processes on one file_system storage hold
// the per-agent bound on undecided requests (64) together: one agent opening 80 consent
// requests at once, split across the instances, gets exactly 64 pending requests and 16
// refusals (429 with Retry-After), and both instances then refuse it.
func TestClusterAdmissionOnFileStorage(t *testing.T) {
	const cap, n = 64, 80
	e := startCluster(t)
	rts := make([]string, n+2)
	for i := range rts {
		rts[i] = challengeFor(t, e.cred, e.apiID+"/write/x")
	}
	out := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = e.tokenRequest(rts[i], "ab"[i%2:i%2+1])
		})
	}
	close(start)
	wg.Wait()
	var admitted, refused [2]int
	for i, a := range out {
		switch {
		case a.err != nil:
			t.Fatalf("request %d: %v", i, a.err)
		case a.status == http.StatusAccepted:
			admitted[i%2]++
		case a.status == http.StatusTooManyRequests && a.header.Get("Retry-After") != "":
			refused[i%2]++
		default:
			t.Fatalf("request %d: %d %.300s", i, a.status, a.body)
		}
	}
	t.Logf("admitted a=%d b=%d, refused a=%d b=%d", admitted[0], admitted[1], refused[0], refused[1])
	if got := admitted[0] + admitted[1]; got != cap || refused[0]+refused[1] != n-cap {
		t.Fatalf("%d admitted across two instances, want %d (admitted %v, refused %v)", got, cap, admitted, refused)
	}
	for i, in := range []string{"a", "b"} {
		if a := e.tokenRequest(rts[n+i], in); a.status != http.StatusTooManyRequests {
			t.Fatalf("instance %s past the bound: %d %.300s", in, a.status, a.body)
		}
	}
}
