//go:build unix

package state

import (
	"bytes"
	"encoding/hex"
	"os"
	"strconv"
	"syscall"
)

// catchUp reads the records appended since s.off (by other processes) into s.seen. The
// flock is held, so nobody is appending: it returns the end of the file, and whether
// the file ends inside a line (torn: see once_unix.go). A torn tail is not consumed,
// so its bytes are read again, as garbage, once a newline ends them.
func (s *onceStripe) catchUp() (end int64, torn bool, err error) {
	pend := 0 // bytes at the start of s.buf read but not yet consumed (no newline yet)
	for {
		n, err := syscall.Pread(s.fd, s.buf[pend:], s.off+int64(pend))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, false, &os.PathError{Op: "read", Path: s.name, Err: err}
		}
		if n == 0 {
			return s.off + int64(pend), pend > 0 || s.skip, nil
		}
		data := s.buf[:pend+n]
		i := bytes.LastIndexByte(data, '\n')
		switch {
		case i >= 0:
			s.parse(data[:i+1])
			s.off += int64(i + 1)
			pend = copy(s.buf, data[i+1:])
		case len(data) == len(s.buf):
			// a line longer than any record: garbage up to its newline, wherever it is
			s.off += int64(len(data))
			s.skip, pend = true, 0
		default:
			pend = len(data)
		}
	}
}

// parse adds the records among whole lines to s.seen, skipping lines that are not
// records (torn, or a garbage line begun in an earlier chunk). A mark twice in the log
// keeps the later expiry: the larger one, unless the older one had died.
func (s *onceStripe) parse(lines []byte) {
	if s.skip {
		i := bytes.IndexByte(lines, '\n')
		lines, s.skip = lines[i+1:], false
	}
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		if h, exp, ok := parseRecord(lines[:i]); ok {
			s.seen[h] = max(s.seen[h], exp)
		}
		lines = lines[i+1:]
	}
}

// appendRecord appends the line "<exp, 10+ digits> <hex of h>\n" to b.
func appendRecord(b []byte, exp int64, h [16]byte) []byte {
	exp = min(max(exp, 0), onceMaxExp)
	var d [20]byte
	ds := strconv.AppendInt(d[:0], exp, 10)
	for range 10 - len(ds) {
		b = append(b, '0')
	}
	b = append(b, ds...)
	b = append(b, ' ')
	b = hex.AppendEncode(b, h[:])
	return append(b, '\n')
}

// parseRecord parses a line (without its newline) written by appendRecord. A strict
// prefix of a record is never one: its hex is short, or its space is missing.
func parseRecord(line []byte) (h [16]byte, exp int64, ok bool) {
	sp := len(line) - 1 - onceHexLen
	if sp < 10 || sp > 13 || line[sp] != ' ' {
		return h, 0, false
	}
	for _, c := range line[:sp] {
		if c < '0' || c > '9' {
			return h, 0, false
		}
		exp = exp*10 + int64(c-'0')
	}
	if _, err := hex.Decode(h[:], line[sp+1:]); err != nil {
		return h, 0, false
	}
	return h, exp, true
}

// compact replaces the log by one holding only its live records, under the flock, so
// logs and maps stay bounded: the new file is written beside it, fsynced (a crash must
// not leave an empty log in its place) and renamed over it (atomic, POSIX rename(2)).
// Holders of the old file see its inode gone from the path once they lock it, and
// reopen. Then s is closed: the next step reopens and reads the new file. A failed
// compaction leaves the log as it was (every record is in it) and is retried later.
func (s *onceStripe) compact(now int64) {
	live := make([]byte, 0, len(s.seen)*onceRecLen)
	for h, exp := range s.seen {
		if now < exp {
			live = appendRecord(live, exp, h)
		}
	}
	tmp := s.name + ".tmp"
	err := writeSynced(tmp, live)
	if err == nil {
		err = os.Rename(tmp, s.name)
	}
	if err != nil {
		_ = os.Remove(tmp)
		s.compactAt = 2 * s.off // back off: retry once the log has doubled
		return
	}
	s.close()
}

// writeSynced writes b to a new file name, fsynced.
func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
