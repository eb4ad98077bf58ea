// Package redistest runs a real redis-server for tests: its own process on a free
// loopback port with a data directory under the test's temp dir and append-only
// persistence on, so a test can kill and restart it and see what survives.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is the redis-server the helper runs (Debian package redis-server).
const Binary = "redis-server"

// Server is one redis-server process.
type Server struct {
	Addr string // 127.0.0.1:port
	Port int
	Dir  string

	t   testing.TB
	cmd *exec.Cmd
	log string
}

// Start runs redis-server for t and stops it when t ends. Under -short it skips t; a
// missing redis-server fails t (these tests must not pass by not running).
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real redis-server; skipped under -short")
	}
	if _, err := exec.LookPath(Binary); err != nil {
		t.Fatalf("%s not found (install the Debian package redis-server): %v", Binary, err)
	}
	s := &Server{Port: freePort(t), Dir: t.TempDir(), t: t}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	s.log = filepath.Join(s.Dir, "redis.log")
	s.Restart()
	t.Cleanup(s.Kill)
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Restart starts the server (again) on the same port and directory; what the
// append-only file holds is loaded back. It waits until the server answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.t.Fatalf("redis-server is already running")
	}
	cmd := exec.Command(Binary,
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
		"--logfile", s.log, "--daemonize", "no", "--protected-mode", "yes")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.ping() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := os.ReadFile(s.log)
	s.Kill()
	s.t.Fatalf("redis-server on %s did not answer PING within 10s; log:\n%s", s.Addr, log)
}

// ping sends a RESP PING and reads +PONG.
func (s *Server) ping() bool {
	c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "+PONG"
}

// Kill ends the server with SIGKILL (no shutdown save: only what the append-only file
// already holds survives) and waits for it to exit. Safe to call when it is down.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// String describes the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("redis-server %s (dir %s)", s.Addr, s.Dir) }
