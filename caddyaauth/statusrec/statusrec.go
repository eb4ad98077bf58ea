// Package statusrec records the status code of an HTTP answer as it is written, for
// handlers that report on the answer once it is written (decision lines, test servers).
package statusrec

import "net/http"

// Writer is an http.ResponseWriter that remembers the first status written (200 for a
// body written without WriteHeader; 0 while nothing was written).
type Writer struct {
	http.ResponseWriter
	Status int
}

// WriteHeader records code and passes it on.
func (w *Writer) WriteHeader(code int) {
	if w.Status == 0 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records 200 when no status was written and passes b on.
func (w *Writer) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
