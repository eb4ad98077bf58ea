//go:build unix

package state

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"
)

// Once on a certmagic.FileStorage appends its marks to one of onceStripes logs,
// <root>/aauth_once/NN.log, instead of creating a file per key: on ext4 creating an
// inode costs far more than the rest of a token (0.3-1 ms), an append to an open file
// does not. A record is one line, "<exp unix seconds, 10+ digits> <32 hex>\n", the hex
// being the first 16 bytes of sha256(key).
//
// Exclusion: every step on a log runs under flock(2) LOCK_EX on its open file, which
// excludes every other open file description of it, in this process or another (on a
// local file system). Under the lock a process first checks that its descriptor is
// still the file at the path (compaction renames a new file over it; rename(2) replaces
// the name atomically), then reads what others appended since its last read, decides
// from every record of the file, and appends with one write(2) (O_APPEND: at the end).
// So the decisions on one log are serialised and each sees every earlier one.
//
// Torn records: a line is appended whole by a writer holding the lock, so a log that
// ends inside a line (no trailing newline) under the lock was left by a write that
// failed part way (a short write, its process killed, a crash). That writer never
// returned true: Once reports success only after write(2) returned the whole record.
// The torn bytes are garbage: the next appender first writes the missing newline (in
// the same write(2) as its record) and readers skip lines that do not parse. A strict
// prefix of a record never parses (its hex is short), so a torn line marks nothing, and
// cannot swallow the records after it.
//
// Durability is that of the per-key files this replaces: no fsync per record; the
// append and the size it grows are written out with the journal commit (ext4
// data=ordered writes data before the metadata commit). A crash may lose the last
// records, as it could lose a created but uncommitted file. Compaction, rare, fsyncs
// its new file before renaming it over the log, so a crash never swaps a log for an
// empty one.
//
// Records from before (a file per key at fs.Filename(key), from the O_EXCL fast path or
// the locked Store path) are honoured while alive: Once reads the key's file first
// (one failed open(2) when there is none) and counts a live or unreadable one as used.

const (
	onceStripes  = 64
	onceReopens  = 100               // bound on "log replaced under us" retries
	onceReadSize = 16 << 10          // read chunk for other processes' appends
	onceDirName  = "aauth_once"      // under the storage root
	onceRecLen   = 10 + 1 + 32 + 1   // a record while exp has 10 digits
	onceHexLen   = 32                // hex of the 16 bytes kept of sha256(key)
	onceMaxExp   = 1_000_000_000_000 // 13 digits: beyond any real lifetime
)

// onceLogMax is the size past which a log is compacted after an append (a variable for
// tests). A log whose live records alone exceed half of it is compacted when it doubles.
var onceLogMax int64 = 1 << 20

// onceLogs is Once on one FileStorage.
type onceLogs struct {
	fs      *certmagic.FileStorage
	dir     string
	stripes [onceStripes]onceStripe
}

// onceStripe is this process's view of one log, guarded by mu.
type onceStripe struct {
	mu        sync.Mutex
	name      string
	f         *os.File // nil: open on next use; kept open (closed by its finalizer)
	fd        int
	dev, ino  uint64 // the file f is: compared with the path's after each flock
	off       int64  // bytes of the file consumed (whole lines, or garbage)
	skip      bool   // off is inside a garbage line: drop bytes up to its newline
	compactAt int64
	seen      map[[16]byte]int64 // hash → exp of every record read or written
	buf       []byte
}

// onceFiles returns Once's logs when st is a FileStorage, else nil.
func onceFiles(st certmagic.Storage) *onceLogs {
	fs, ok := st.(*certmagic.FileStorage)
	if !ok {
		return nil
	}
	l := &onceLogs{fs: fs, dir: filepath.Join(fs.Path, onceDirName)}
	for i := range l.stripes {
		l.stripes[i].name = filepath.Join(fs.Path, onceStripeName(i))
	}
	return l
}

// onceStripeOf is the stripe of a key's sha256.
func onceStripeOf(sum [32]byte) int { return int(sum[0]) % onceStripes }

// onceStripeName is stripe i's log, relative to the storage root.
func onceStripeName(i int) string { return filepath.Join(onceDirName, fmt.Sprintf("%02d.log", i)) }

// onceLogName is the log holding key's mark, relative to the storage root.
func onceLogName(key string) string {
	return onceStripeName(onceStripeOf(sha256.Sum256([]byte(key))))
}

// once is Once on the logs.
func (l *onceLogs) once(ctx context.Context, key string, exp time.Time) (bool, error) {
	used, err := legacyUsed(l.fs.Filename(key))
	if err != nil {
		return false, fmt.Errorf("state: loading %s: %w", key, err)
	}
	if used {
		return false, nil
	}
	sum := sha256.Sum256([]byte(key))
	var h [16]byte
	copy(h[:], sum[:16])
	s := &l.stripes[onceStripeOf(sum)]
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh, err := s.take(ctx, l.dir, h, exp.Unix())
	if err != nil {
		return false, fmt.Errorf("state: marking %s: %w", key, err)
	}
	return fresh, nil
}

// legacyUsed reports whether name holds a per-key record that still marks its key used:
// a live {"exp":N}, or one that cannot be read as a record (fail closed, as before: its
// writer crashed between create and write; the jti scan deletes it).
func legacyUsed(name string) (bool, error) {
	fd, err := openRetry(name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err == syscall.ENOENT {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil {
		return false, err
	}
	var rec onceRecord
	if json.Unmarshal(raw, &rec) != nil {
		return true, nil
	}
	return time.Now().Unix() < rec.Exp, nil
}

// take marks h used until exp unless a live record of it is in the log. s.mu is held.
func (s *onceStripe) take(ctx context.Context, dir string, h [16]byte, exp int64) (bool, error) {
	if err := s.lockCurrent(ctx, dir); err != nil {
		return false, err
	}
	defer s.unlock()
	end, torn, err := s.catchUp()
	if err != nil {
		return false, err
	}
	now := time.Now().Unix()
	if e, ok := s.seen[h]; ok && now < e {
		return false, nil
	}
	var buf [onceRecLen + 8]byte
	rec := buf[:0]
	if torn {
		rec = append(rec, '\n') // end the torn line: it stays garbage
	}
	rec = appendRecord(rec, exp, h)
	if err := writeAll(s.fd, rec); err != nil {
		// fail closed; whatever reached the file is a torn line for the next reader
		return false, err
	}
	s.off, s.skip = end+int64(len(rec)), false
	s.seen[h] = max(s.seen[h], exp)
	if s.off > max(s.compactAt, onceLogMax) {
		s.compact(now)
	}
	return true, nil
}

// lockCurrent opens the log if needed and flocks it, until the locked file is the one
// at the path (another process may have renamed a compacted log over it: then the
// records are in the new file, and this one is closed and reopened).
func (s *onceStripe) lockCurrent(ctx context.Context, dir string) error {
	for range onceReopens {
		if s.f == nil {
			if err := s.open(dir); err != nil {
				return err
			}
		}
		if err := flockCtx(ctx, s.fd); err != nil {
			return err
		}
		var st syscall.Stat_t
		err := statRetry(s.name, &st)
		if err == nil && uint64(st.Dev) == s.dev && uint64(st.Ino) == s.ino {
			return nil
		}
		if err != nil && err != syscall.ENOENT {
			s.unlock()
			return &os.PathError{Op: "stat", Path: s.name, Err: err}
		}
		s.close() // replaced (or removed): closing drops our lock on the old file
	}
	return fmt.Errorf("%s replaced %d times in a row", s.name, onceReopens)
}

// open opens the log (creating it and its folder), forgetting what was read before.
func (s *onceStripe) open(dir string) error {
	f, err := os.OpenFile(s.name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		f, err = os.OpenFile(s.name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	}
	if err != nil {
		return err
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		_ = f.Close()
		return fmt.Errorf("%s: no inode", s.name)
	}
	s.f, s.fd = f, int(f.Fd())
	s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	s.off, s.skip = 0, false
	s.compactAt = 2 * info.Size() // live records already there need not be compacted again soon
	s.seen = make(map[[16]byte]int64)
	if s.buf == nil {
		s.buf = make([]byte, onceReadSize)
	}
	return nil
}

// close closes the log (releasing its flock) so the next step reopens it.
func (s *onceStripe) close() {
	if s.f != nil {
		_ = s.f.Close()
	}
	s.f, s.fd, s.seen = nil, -1, nil
}

// unlock releases the flock (if the log was closed, closing released it).
func (s *onceStripe) unlock() {
	if s.f != nil {
		_ = syscall.Flock(s.fd, syscall.LOCK_UN)
	}
}

// flockCtx takes flock(2) LOCK_EX on fd, polling with LOCK_NB (a blocking flock cannot
// be cancelled) until it holds it or ctx ends; the once logs and the stripe locks of
// Update both take it. A log is held for microseconds, so the polls start short and
// back off to lockPoll/4.
func flockCtx(ctx context.Context, fd int) error {
	wait := 50 * time.Microsecond
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait/2 + rand.N(wait)):
		}
		wait = min(2*wait, lockPoll/4)
	}
}

// openRetry is open(2), retried on EINTR, without an os.File on the hot path.
func openRetry(name string, mode int, perm uint32) (int, error) {
	for {
		fd, err := syscall.Open(name, mode, perm)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// statRetry is stat(2), retried on EINTR.
func statRetry(name string, st *syscall.Stat_t) error {
	for {
		err := syscall.Stat(name, st)
		if err != syscall.EINTR {
			return err
		}
	}
}

// writeAll writes b with one write(2); a short write is an error (the rest is not
// retried: the record would no longer be one write, and its line is torn anyway).
func writeAll(fd int, b []byte) error {
	for {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue // nothing written (POSIX write: EINTR before any data)
		}
		if err != nil {
			return err
		}
		if n < len(b) {
			return io.ErrShortWrite
		}
		return nil
	}
}
