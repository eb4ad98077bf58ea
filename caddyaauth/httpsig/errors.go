package httpsig

import "fmt"

// Error codes carried in 401 JSON bodies (PROTOCOL.md Part 2 §5.4).
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidSignature     = "invalid_signature"
	CodeInvalidKey           = "invalid_key"
	CodeUnsupportedAlgorithm = "unsupported_algorithm"
)

// Error is a signature failure with a protocol error code. Its text never contains key
// material or tokens, so it is safe to return to the client and to log.
type Error struct {
	Code               string
	Msg                string
	RequiredComponents []string // set when required components are not covered
}

func (e *Error) Error() string { return e.Msg }

func fail(code, format string, a ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}
