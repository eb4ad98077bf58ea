package wire

import "net/http"

// SafeMethod reports whether m is a safe method (RFC 9110 §9.2.1). The gateway's replay
// policy "unsafe" accepts each request with any other method once, and the agent signs
// such requests with a nonce so two identical ones stay distinct.
func SafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
