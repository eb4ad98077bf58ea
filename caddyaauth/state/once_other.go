//go:build !unix

package state

import (
	"context"
	"time"

	"github.com/caddyserver/certmagic"
)

// onceLogs: without flock(2), Once always takes the storage's lock (see onceLocked).
type onceLogs struct{}

// onceFiles: without flock(2), there are no logs.
func onceFiles(certmagic.Storage) *onceLogs { return nil }

// once is never reached (Storage.files is nil); it exists so Once compiles everywhere.
func (*onceLogs) once(context.Context, string, time.Time) (bool, error) {
	panic("state: Once logs need flock(2)")
}
