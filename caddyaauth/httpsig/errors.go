package httpsig

import (
	"fmt"

	"github.com/caddy-aauth/caddy-aauth/caddyaauth/wire"
)

// Error codes carried in 401 JSON bodies; defined in package wire.
const (
	CodeInvalidRequest       = wire.CodeInvalidRequest
	CodeInvalidSignature     = wire.CodeInvalidSignature
	CodeInvalidKey           = wire.CodeInvalidKey
	CodeUnsupportedAlgorithm = wire.CodeUnsupportedAlgorithm
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
	if len(a) == 0 {
		return &Error{Code: code, Msg: format} // a fixed message: nothing to format
	}
	return &Error{Code: code, Msg: fmt.Sprintf(format, a...)}
}
