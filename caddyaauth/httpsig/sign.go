package httpsig

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/dunglas/httpsfv"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/keys"
)

// SignOptions shape the headers a signer emits.
type SignOptions struct {
	Label      string    // default "sig"
	Created    time.Time // default time.Now()
	Expires    time.Time // optional
	Extra      []string  // extra covered components, e.g. "content-type", "content-digest"
	Dictionary bool      // emit Signature-Key in the RFC 8941 dictionary form (default: parenthesised sig=(…))
	StdBase64  bool      // emit the signature in standard base64 (default: base64url without padding)
	Nonce      string    // optional nonce parameter (RFC 9421 §2.3), so two identical requests differ
}

// NewNonce returns a random nonce for SignOptions.Nonce: 128 bits, base64url.
func NewNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Authority is the RFC 9421 @authority of a URL host: lowercase, default port removed.
func Authority(scheme, hostport string) string {
	h := strings.ToLower(hostport)
	if !strings.Contains(h, ":") {
		return h // no port (what SplitHostPort would refuse), without building its error
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		return strings.TrimSuffix(h, ":")
	}
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") || port == "" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return h
}

// TargetOf describes an outgoing request for signing.
func TargetOf(req *http.Request) Target {
	return Target{
		Method:    req.Method,
		Authority: Authority(req.URL.Scheme, hostOf(req)),
		Path:      req.URL.EscapedPath(),
		Query:     req.URL.RawQuery,
		HasQuery:  req.URL.RawQuery != "" || req.URL.ForceQuery,
		Header:    req.Header,
	}
}

// hostOf is the authority an outgoing request will carry: req.Host overrides the URL.
func hostOf(req *http.Request) string {
	if req.Host != "" {
		return req.Host
	}
	return req.URL.Host
}

// Sign adds Signature-Input, Signature and Signature-Key to req. The components are the
// four required ones, @query when the URL has a query, then opts.Extra, with
// signature-key last (the reference implementation's order).
func Sign(req *http.Request, s *keys.Signer, key SigKey, opts SignOptions) error {
	if opts.Label == "" {
		opts.Label = "sig"
	}
	if opts.Created.IsZero() {
		opts.Created = time.Now()
	}
	key.Label = opts.Label
	req.Header.Del(HeaderSignatureInput)
	req.Header.Del(HeaderSignature)
	req.Header.Set(HeaderSignatureKey, key.Format(opts.Dictionary))

	t := TargetOf(req)
	comps := []string{"@method", "@authority", "@path"}
	if t.HasQuery {
		comps = append(comps, "@query")
	}
	comps = append(comps, opts.Extra...)
	comps = append(comps, "signature-key")

	il := httpsfv.InnerList{Params: httpsfv.NewParams()}
	for _, c := range comps {
		il.Items = append(il.Items, httpsfv.NewItem(c))
	}
	il.Params.Add("created", opts.Created.Unix())
	if !opts.Expires.IsZero() {
		il.Params.Add("expires", opts.Expires.Unix())
	}
	if opts.Nonce != "" {
		il.Params.Add("nonce", opts.Nonce)
	}
	params, err := httpsfv.Marshal(httpsfv.List{il})
	if err != nil {
		return err
	}
	sig := &Signature{Label: opts.Label, Components: comps, params: params}
	base, err := Base(sig, t)
	if err != nil {
		return err
	}
	raw, err := s.Sign(base)
	if err != nil {
		return err
	}
	enc := base64.RawURLEncoding.EncodeToString(raw)
	if opts.StdBase64 {
		enc = base64.StdEncoding.EncodeToString(raw)
	}
	req.Header.Set(HeaderSignatureInput, opts.Label+"="+params)
	req.Header.Set(HeaderSignature, opts.Label+"=:"+enc+":")
	return nil
}

// ContentDigest is the RFC 9530 Content-Digest value of body with sha-256.
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// CheckContentDigest verifies a Content-Digest field against body. It accepts sha-256 and
// sha-512 members; every supported member present must match and at least one must be.
func CheckContentDigest(field string, body []byte) error {
	d, err := httpsfv.UnmarshalDictionary([]string{field})
	if err != nil {
		return fail(CodeInvalidSignature, "Content-Digest is not a valid structured dictionary")
	}
	matched := 0
	for _, alg := range d.Names() {
		m, _ := d.Get(alg)
		item, ok := m.(httpsfv.Item)
		if !ok {
			return fail(CodeInvalidSignature, "Content-Digest member must be a byte sequence")
		}
		got, ok := item.Value.([]byte)
		if !ok {
			return fail(CodeInvalidSignature, "Content-Digest member must be a byte sequence")
		}
		var want []byte
		switch alg {
		case "sha-256":
			s := sha256.Sum256(body)
			want = s[:]
		case "sha-512":
			s := sha512.Sum512(body)
			want = s[:]
		default:
			continue
		}
		if len(got) != len(want) || subtle.ConstantTimeCompare(got, want) != 1 {
			return fail(CodeInvalidSignature, "Content-Digest does not match the body")
		}
		matched++
	}
	if matched == 0 {
		return fail(CodeInvalidSignature, "Content-Digest has no sha-256 or sha-512 member")
	}
	return nil
}

// SetContentDigest sets Content-Digest (and keeps the body readable) on an outgoing request.
func SetContentDigest(req *http.Request, body []byte) {
	req.Header.Set("Content-Digest", ContentDigest(body))
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}
