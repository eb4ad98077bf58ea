package wire

import (
	"encoding/json"
	"net/http"
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
func (e Error) JSON() []byte {
	b, _ := json.Marshal(e) // strings and a string slice: cannot fail
	return b
}

// WriteError answers status with e as an uncacheable application/json body.
func WriteError(w http.ResponseWriter, status int, e Error) {
	WriteJSON(w, status, e.JSON())
}

// WriteJSON answers status with the JSON body b, uncacheable (Cache-Control: no-store,
// as RFC 6749 §5.1 asks of token responses and errors).
func WriteJSON(w http.ResponseWriter, status int, b []byte) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
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
