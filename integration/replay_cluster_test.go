package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
)

// withReplayGateway makes every instance of the cluster also serve a gateway: an
// identity route whose unsafe requests are single-use (replay unsafe), in front of the
// echo backend. The instances answer for the same authority (replayHost), as they would
// behind one load balancer.
func withReplayGateway(e *clusterEnv) {
	e.gateway = func(port, backend string) string {
		return fmt.Sprintf(`
http://:%s {
	aauth {
		require identity
		replay unsafe
	}
	reverse_proxy %s
}
`, port, backend)
	}
}

// replayHost is the authority the agent signs for the gateway on both instances.
const replayHost = "gw.example"

// fileReplayGlobals: one file_system storage, the aauth app with replay_store store.
func fileReplayGlobals(store string) string {
	return "storage file_system %s/storage\n\taauth {\n\t\tdev\n\t\treplay_store " + store + "\n\t}"
}

// TestClusterReplayOnFileStorage: two instances on one file_system storage. With
// replay_store shared, one signed POST (RFC 9421 signature built once) sent 20 times at
// once, split over both instances, reaches the backend exactly once, over 20 trials.
// With replay_store local (the default without a state backend) each instance accepts
// it once: exactly 2 of 20, the gap the shared store closes.
func TestClusterReplayOnFileStorage(t *testing.T) {
	t.Run("shared", func(t *testing.T) {
		e := startClusterWith(t, fileReplayGlobals("shared"), withReplayGateway)
		e.raceReplays(t, 20, 1)
	})
	t.Run("local", func(t *testing.T) {
		e := startClusterWith(t, fileReplayGlobals("local"), withReplayGateway)
		e.raceReplays(t, 5, 2)
	})
}

// signedPost is one signed POST to the gateway, body and headers kept so that it can
// be sent again, byte for byte, to any instance.
type signedPost struct {
	body   []byte
	header http.Header
}

func (e *clusterEnv) signPost(t *testing.T, n int) signedPost {
	t.Helper()
	body := fmt.Appendf(nil, `{"n":%d}`, n)
	req, _ := http.NewRequest("POST", "http://"+replayHost+"/replay/x", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	httpsig.SetContentDigest(req, body)
	if err := httpsig.Sign(req, e.cred.Signer, e.cred.SigKey(), httpsig.SignOptions{Nonce: httpsig.NewNonce(), Extra: []string{"content-type", "content-digest"}}); err != nil {
		t.Fatal(err)
	}
	return signedPost{body: body, header: req.Header}
}

// sendGateway sends p to the gateway of instance ("a" or "b") with the signed Host.
func (e *clusterEnv) sendGateway(p signedPost, instance string) answer {
	i := 0
	if instance == "b" {
		i = 1
	}
	req, _ := http.NewRequest("POST", e.gwDirect[i]+"/replay/x", bytes.NewReader(p.body))
	req.Header = p.header.Clone()
	req.Host = replayHost
	resp, err := plainClient().Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), err: err, header: resp.Header}
}

// raceReplays sends each of trials signed POSTs 20 times at once, split over a and b,
// and wants exactly want 2xx answers per POST (the others 401 invalid_signature).
func (e *clusterEnv) raceReplays(t *testing.T, trials, want int) {
	bad := 0
	for trial := range trials {
		p := e.signPost(t, trial)
		ok, statuses := countAccepted(parallel(20, func(in string) answer { return e.sendGateway(p, in) }))
		if ok != want || statuses[http.StatusUnauthorized] != 20-want {
			bad++
			t.Errorf("trial %d: %d of 20 copies accepted, want %d (statuses %v)", trial, ok, want, statuses)
		}
	}
	t.Logf("one signed POST sent 20 times across two instances: %d of %d trials gave other than %d accepted", bad, trials, want)
}

// countAccepted counts the 2xx answers; a failed request counts under status 0.
func countAccepted(answers []answer) (accepted int, statuses map[int]int) {
	statuses = map[int]int{}
	for _, a := range answers {
		statuses[a.status]++
		if a.err == nil && a.status/100 == 2 {
			accepted++
		}
	}
	return accepted, statuses
}
