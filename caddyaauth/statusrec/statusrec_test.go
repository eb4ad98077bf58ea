package statusrec

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestWriter: the first status wins; a body alone records 200; nothing written is 0.
func TestWriter(t *testing.T) {
	w := &Writer{ResponseWriter: httptest.NewRecorder()}
	if w.Status != 0 {
		t.Fatal("status before writing")
	}
	w.WriteHeader(http.StatusAccepted)
	w.WriteHeader(http.StatusTeapot)
	if w.Status != http.StatusAccepted {
		t.Fatalf("status %d", w.Status)
	}
	b := &Writer{ResponseWriter: httptest.NewRecorder()}
	_, _ = b.Write([]byte("x"))
	if b.Status != http.StatusOK || b.Unwrap() == nil {
		t.Fatalf("status %d", b.Status)
	}
}
