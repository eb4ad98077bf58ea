package wire

import (
	"encoding/json"
	"net/http"
	"sync"
)

// Error is the JSON error body: {"error", "error_description"} (RFC 6749 §5.2), with
// required_components when a signature lacks components the verifier demands (RFC 9421
// §7.2.1 leaves the signalling to the application).
type Error struct {
	Code               string   `json:"error"`
	Description        string   `json:"error_description"`
	RequiredComponents []string `json:"required_components,omitempty"`
}

// JSON returns the body's bytes.
func (e Error) JSON() []byte { return e.appendJSON(nil) }

// appendJSON appends the body's bytes to b.
func (e Error) appendJSON(b []byte) []byte {
	if len(e.RequiredComponents) == 0 && plainJSON(e.Code) && plainJSON(e.Description) {
		// What json.Marshal writes for these strings, without reflection.
		b = append(b, `{"error":"`...)
		b = append(b, e.Code...)
		b = append(b, `","error_description":"`...)
		b = append(b, e.Description...)
		return append(b, `"}`...)
	}
	j, _ := json.Marshal(e) // strings and a string slice: cannot fail
	return append(b, j...)
}

// bodyBufs are the buffers WriteError builds bodies in: a refusal may be answered to a
// flood, and the writer copies the bytes (io.Writer must not retain them).
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// plainJSON reports whether json.Marshal writes s between its quotes unchanged:
// printable ASCII without the characters it escapes (quote, backslash, and the HTML
// characters <, > and &).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// WriteError answers status with e as an uncacheable application/json body.
func WriteError(w http.ResponseWriter, status int, e Error) {
	bp := bodyBufs.Get().(*[]byte)
	*bp = e.appendJSON((*bp)[:0])
	WriteJSON(w, status, *bp)
	if cap(*bp) <= 4096 { // keep the pool's buffers small
		bodyBufs.Put(bp)
	}
}

// WriteJSON answers status with the JSON body b, uncacheable (Cache-Control: no-store,
// as RFC 6749 §5.1 asks of token responses and errors).
func WriteJSON(w http.ResponseWriter, status int, b []byte) {
	hdr := w.Header()
	vals := []string{"application/json", "no-store"} // one allocation for both fields
	hdr["Content-Type"], hdr["Cache-Control"] = vals[0:1:1], vals[1:2:2]
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// DecodeError reads an error body leniently, as a client must: unknown members are
// ignored, and a body that is not a JSON object (or has members of other types) yields
// the zero Error. The text is the server's and must be cleaned before it is printed.
func DecodeError(b []byte) Error {
	var e Error
	if json.Unmarshal(b, &e) != nil {
		return Error{}
	}
	return e
}
