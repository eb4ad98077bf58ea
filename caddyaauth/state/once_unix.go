//go:build unix

package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"
)

// Once on a certmagic.FileStorage creates the record with open(2) O_CREAT|O_EXCL: of all
// callers in all processes, exactly one creates the file (atomic across processes on a
// local file system, as flock(2) is; open(2) supports O_EXCL on NFS only from NFSv3
// on), so a first use needs no lock and no temp file, fsync or rename.
//
// Durability is that of the locked path it replaces: certmagic's atomic write fsyncs the
// temp file but never the folder, so the rename that publishes it lasts only once the
// file system's journal commits it; the O_EXCL create and its write are bounded by the
// same commit (ext4 data=ordered writes the data out before the metadata commit).
//
// A record that exists but is empty or unreadable counts as used (fail closed): its
// creator is between its create and its write, or crashed there. Such a file is never
// taken again; whoever sweeps the key space deletes it (the auth server's hourly jti
// scan deletes unreadable records last written over a minute ago; the gateway's shared
// replay deletes whole buckets once their expiry has passed, whatever they hold).

// onceAttempts bounds how often onceFile starts over when the record vanishes between
// two of its steps (a sweeper deleting it).
const onceAttempts = 3

// onceFiles returns st when Once may create its records with O_EXCL, else nil.
func onceFiles(st certmagic.Storage) *certmagic.FileStorage {
	fst, _ := st.(*certmagic.FileStorage)
	return fst
}

// onceFile is Once on a FileStorage: create the record, else read it; only an expired
// record goes through the key's lock, to be taken again by exactly one caller.
func (s *Storage) onceFile(ctx context.Context, key string, exp time.Time) (bool, error) {
	name := s.files.Filename(key)
	rec := strconv.AppendInt([]byte(`{"exp":`), exp.Unix(), 10)
	rec = append(rec, '}') // the bytes json.Marshal(onceRecord{...}) gives
	for range onceAttempts {
		err := createOnce(name, rec)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("state: creating %s: %w", key, err)
		}
		raw, err := os.ReadFile(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue // deleted since our create failed: try again
		case err != nil:
			return false, fmt.Errorf("state: loading %s: %w", key, err)
		case !onceExpired(raw):
			return false, nil // alive, or not yet written (or never will be)
		}
		fresh, gone, err := s.retakeOnce(ctx, key, name, rec)
		if !gone {
			return fresh, err
		}
	}
	return false, fmt.Errorf("state: %s vanished %d times while being taken", key, onceAttempts)
}

// onceExpired reports whether raw is a readable record whose mark has died.
func onceExpired(raw []byte) bool {
	var rec onceRecord
	return json.Unmarshal(raw, &rec) == nil && time.Now().Unix() >= rec.Exp
}

// createOnce creates name holding rec, failing with an error matching fs.ErrExist when
// it already exists. The folders are created (0700, as certmagic does) only when
// missing, so the common case is one open, one write, one close.
func createOnce(name string, rec []byte) error {
	fd, err := openExcl(name)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			return err
		}
		fd, err = openExcl(name)
	}
	if err != nil {
		return err
	}
	n, werr := syscall.Write(fd, rec)
	if werr == nil && n < len(rec) {
		werr = io.ErrShortWrite
	}
	cerr := syscall.Close(fd)
	if werr != nil || cerr != nil {
		// the record is ours and incomplete: remove it so the key is not blocked
		// forever, and fail this call
		_ = os.Remove(name)
		return &fs.PathError{Op: "write", Path: name, Err: errors.Join(werr, cerr)}
	}
	return nil
}

// openExcl opens name for writing, creating it; it fails if name exists. A raw
// descriptor spares the os.File (poller registration, finalizer) on the hot path.
func openExcl(name string) (int, error) {
	for {
		fd, err := syscall.Open(name, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o600)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return -1, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return fd, nil
	}
}

// retakeOnce takes the record at name again if it is still expired once the key's lock
// is held, rewriting it in place: the file never leaves its path, so no O_EXCL creator can
// slip in while it is rewritten, and a reader seeing it half-written counts it as used.
// gone reports that the record was deleted before or while it was rewritten (a sweeper),
// so the caller starts over with a create.
func (s *Storage) retakeOnce(ctx context.Context, key, name string, rec []byte) (fresh, gone bool, err error) {
	unlock, err := s.lock(ctx, key)
	if err != nil {
		return false, false, err
	}
	defer unlock()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, true, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("state: loading %s: %w", key, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil {
		return false, false, fmt.Errorf("state: loading %s: %w", key, err)
	}
	if !onceExpired(raw) {
		return false, false, nil // another caller took it first
	}
	// A failed rewrite leaves a truncated record: used (fail closed) until swept.
	if err := f.Truncate(0); err != nil {
		return false, false, fmt.Errorf("state: storing %s: %w", key, err)
	}
	if _, err := f.WriteAt(rec, 0); err != nil {
		return false, false, fmt.Errorf("state: storing %s: %w", key, err)
	}
	info, err := f.Stat()
	if err != nil {
		return false, false, fmt.Errorf("state: storing %s: %w", key, err)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return false, true, nil // we rewrote a deleted file: no claim on the key
	}
	if err := f.Close(); err != nil {
		return false, false, fmt.Errorf("state: storing %s: %w", key, err)
	}
	return true, false, nil
}
