//go:build unix

package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/caddyserver/certmagic"
)

// flockStripes is the number of lock files a file_system storage's steps share
// (<storage>/locks/aauth_state/<stripe>.lock): keys hash onto them, so their number is
// bounded however many keys there are.
const flockStripes = 4096

// flockFor returns, for a certmagic.FileStorage, a lock on the stripe file of a key
// taken with flock(2): exclusive across every process on the same directory (on a local
// file system), released by the kernel if the holder dies (so never stale), and cheap
// (no fsync, unlike certmagic's lock files). It returns nil for other storages.
func flockFor(st certmagic.Storage) func(ctx context.Context, sum [32]byte) (func(), error) {
	fs, ok := st.(*certmagic.FileStorage)
	if !ok {
		return nil
	}
	dir := filepath.Join(fs.Path, "locks", "aauth_state")
	return func(ctx context.Context, sum [32]byte) (func(), error) {
		stripe := (int(sum[0])<<8 | int(sum[1])) % flockStripes
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%03x.lock", stripe)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		if err := flockCtx(ctx, int(f.Fd())); err != nil {
			_ = f.Close()
			return nil, err
		}
		return func() { _ = f.Close() }, nil // closing releases the lock
	}
}
