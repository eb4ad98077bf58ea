package reqverify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/httpsig"
)

// ErrBodyTooLarge is returned by CheckBody when the body exceeds the cap (answer 413).
var ErrBodyTooLarge = errors.New("request body too large")

// BodyCheckNeeded is the one rule for when a request body must be checked against its
// Content-Digest: whenever the verified signature covers content-digest, whatever the
// route demands, and whenever the route or endpoint demands content-digest. A covered
// digest that is not recomputed protects nothing: within the signature window anyone
// who saw the request could resend its headers with another body (RFC 9421 §7.2.8;
// RFC 9530 §6). A request that lacks a demanded component has already been refused by
// the policy check; the demanded case is listed for completeness.
func BodyCheckNeeded(sig *httpsig.Signature, demanded []string) bool {
	return (sig != nil && sig.Covers("content-digest")) || slices.Contains(demanded, "content-digest")
}

// CheckBody reads the request body (at most max bytes; max must be positive), verifies
// it against the Content-Digest field (RFC 9530: sha-256 and sha-512), and puts the bytes
// back in r.Body with a matching ContentLength and GetBody, so that what is forwarded is
// exactly what was verified. Call it only after the signature verified: reading the body
// sends 100 Continue. Errors: *httpsig.Error (digest missing, malformed or wrong; a 401),
// ErrBodyTooLarge (a 413, also for an outer http.MaxBytesReader), or a read error.
func CheckBody(r *http.Request, max int64) error {
	field, ok := httpsig.FieldValue(r.Header, "Content-Digest")
	if !ok {
		return &httpsig.Error{Code: httpsig.CodeInvalidSignature, Msg: "Content-Digest header is missing"}
	}
	body, err := readBody(r, max)
	if err != nil {
		return err
	}
	if err := httpsig.CheckContentDigest(field, body); err != nil {
		return err
	}
	putBack(r, body)
	return nil
}

// readBody reads the whole body, at most max bytes (ErrBodyTooLarge beyond, also for an
// outer http.MaxBytesReader).
func readBody(r *http.Request, max int64) ([]byte, error) {
	if max <= 0 || r.ContentLength > max {
		return nil, ErrBodyTooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	_ = r.Body.Close()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrBodyTooLarge
		}
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// putBack makes body the request's body again, with a matching ContentLength and
// GetBody, so that what is forwarded is exactly what was verified.
func putBack(r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}
