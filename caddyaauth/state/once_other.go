//go:build !unix

package state

import (
	"context"
	"time"

	"github.com/caddyserver/certmagic"
)

// onceFiles: without the Unix open(2) and link-count checks, Once always locks.
func onceFiles(certmagic.Storage) *certmagic.FileStorage { return nil }

// onceFile is never reached (files is nil); it exists so Once compiles everywhere.
func (s *Storage) onceFile(ctx context.Context, key string, exp time.Time) (bool, error) {
	return s.onceLocked(ctx, key, exp)
}
