//go:build unix

package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

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
		for {
			err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return func() { _ = f.Close() }, nil // closing releases the lock
			}
			if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
				_ = f.Close()
				return nil, err
			}
			select {
			case <-ctx.Done():
				_ = f.Close()
				return nil, ctx.Err()
			case <-time.After(lockPoll/20 + rand.N(lockPoll/4)):
			}
		}
	}
}
