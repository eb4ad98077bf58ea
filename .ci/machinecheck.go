//go:build ignore

// Command machinecheck.go runs the tests on a machine that looks like a user's (issue 11
// §8): HOME is a fresh folder holding a Caddy config of the user's own
// (~/.config/caddy/autosave.json), the XDG variables are unset, as on most desktops, and,
// with -demo (the default), the demo (Caddyfile.example) runs from that HOME on its fixed
// ports while the tests run. Afterwards:
//   - the autosave.json must be byte for byte as it was, and nothing else under HOME
//     changed after the demo was ready (the Go command's ~/.config/go aside);
//   - the repository's files (git status) must be as they were;
//   - every skipped test must say why (its t.Skip message is printed here).
//
// The Go command's folders (GOPATH, GOMODCACHE, GOCACHE, GOENV) stay the user's.
//
//	go run .ci/machinecheck.go [-demo=false] [-want-skip TestName] [-- <go test arguments>]
//
// The go test arguments default to the README's: -race -p 1 -count=1 -timeout 30m ./...
// Run it from the repository root; the full test output (go test -json) is kept in the
// file it names. Exit status 1 when a test failed or a check did not hold.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// wantSkip is the -want-skip flag.
var wantSkip string

func main() {
	demo := flag.Bool("demo", true, "run the demo (Caddyfile.example) while the tests run")
	flag.StringVar(&wantSkip, "want-skip", "", "fail unless the test of this name skipped")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		args = []string{"-race", "-p", "1", "-count=1", "-timeout", "30m", "./..."}
	}
	if err := run(*demo, args); err != nil {
		fmt.Fprintln(os.Stderr, "machinecheck:", err)
		os.Exit(1)
	}
}

func run(demo bool, testArgs []string) error {
	work, err := os.MkdirTemp("", "aauth-machinecheck-")
	if err != nil {
		return err
	}
	home := filepath.Join(work, "home")
	autosave := filepath.Join(home, ".config", "caddy", "autosave.json")
	if err := os.MkdirAll(filepath.Dir(autosave), 0o700); err != nil {
		return err
	}
	sentinel := fmt.Sprintf(`{"admin":{"listen":"localhost:2019"},"note":"the user's own config, written %s"}`, time.Now().UTC().Format(time.RFC3339Nano))
	if err := os.WriteFile(autosave, []byte(sentinel), 0o600); err != nil {
		return err
	}
	env, err := userEnv(home)
	if err != nil {
		return err
	}
	fmt.Printf("== HOME=%s, %s sha256 %s\n", home, autosave, digest([]byte(sentinel)))
	if demo {
		stop, err := startDemo(work, env)
		if err != nil {
			return err
		}
		defer stop()
	}
	before, err := settled(home)
	if err != nil {
		return err
	}
	repoBefore, err := gitStatus()
	if err != nil {
		return err
	}
	testErr := goTest(work, env, testArgs)
	problems := compare(home, before, autosave, sentinel)
	if repoAfter, err := gitStatus(); err != nil || repoAfter != repoBefore {
		problems = append(problems, fmt.Sprintf("the repository changed during the tests (git status before:\n%s\nafter:\n%s) %v", repoBefore, repoAfter, err))
	}
	for _, p := range problems {
		fmt.Println("PROBLEM:", p)
	}
	if len(problems) == 0 {
		fmt.Println("== the autosave.json, the rest of HOME and the repository are unchanged")
	}
	if testErr != nil {
		return testErr
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d problems", len(problems))
	}
	return nil
}

// userEnv is this process's environment with HOME replaced, the XDG variables removed and
// the Go command's folders pinned to the user's.
func userEnv(home string) ([]string, error) {
	out, err := exec.Command("go", "env", "-json", "GOPATH", "GOMODCACHE", "GOCACHE", "GOENV").Output()
	if err != nil {
		return nil, fmt.Errorf("go env: %w", err)
	}
	var goEnv map[string]string
	if err := json.Unmarshal(out, &goEnv); err != nil {
		return nil, err
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "HOME" || strings.HasPrefix(name, "XDG_") || goEnv[name] != "" {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home)
	for k, v := range goEnv {
		env = append(env, k+"="+v)
	}
	return env, nil
}

// startDemo builds ./cmd/caddy, runs Caddyfile.example as the README does and waits for
// its ready line; stop ends it.
func startDemo(work string, env []string) (stop func(), err error) {
	bin := filepath.Join(work, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Env, build.Stdout, build.Stderr = env, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/caddy: %w", err)
	}
	logPath := filepath.Join(work, "demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", "Caddyfile.example", "--adapter", "caddyfile")
	cmd.Env, cmd.Stderr = env, logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready: ") {
				ready <- sc.Text()
			}
		}
		close(ready)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			stop()
			return nil, fmt.Errorf("the demo exited without its ready line; its log: %s", logPath)
		}
		fmt.Printf("== the demo (Caddyfile.example, log %s) printed: %s\n", logPath, line)
	case <-time.After(2 * time.Minute):
		stop()
		return nil, fmt.Errorf("no ready line from the demo within 2 minutes; its log: %s", logPath)
	}
	return stop, nil
}

// snapshot maps every file and folder under root to its content's digest ("dir" for a
// folder), leaving out the Go command's own folder (~/.config/go, where it keeps its
// telemetry counters whatever GOENV says).
func snapshot(root string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == filepath.Join(".config", "go") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			files[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = digest(b)
		return nil
	})
	return files, err
}

// settled waits until nothing under root changes for a second (the demo finishes what it
// does after starting, such as Caddy's storage cleaning), up to 30 s, and returns the
// snapshot.
func settled(root string) (map[string]string, error) {
	prev, err := snapshot(root)
	for deadline := time.Now().Add(30 * time.Second); err == nil && time.Now().Before(deadline); {
		time.Sleep(time.Second)
		var next map[string]string
		if next, err = snapshot(root); err == nil && maps.Equal(prev, next) {
			return next, nil
		}
		prev = next
	}
	return prev, err
}

// compare lists how HOME differs from before and whether the autosave.json is intact.
func compare(home string, before map[string]string, autosave, sentinel string) []string {
	var problems []string
	b, err := os.ReadFile(autosave)
	fmt.Printf("== after the tests: %s sha256 %s\n", autosave, digest(b))
	if err != nil || string(b) != sentinel {
		problems = append(problems, fmt.Sprintf("%s changed (%v)", autosave, err))
	}
	after, err := snapshot(home)
	if err != nil {
		return append(problems, err.Error())
	}
	for path, d := range after {
		if before[path] != d {
			problems = append(problems, fmt.Sprintf("HOME/%s was written during the tests", path))
		}
	}
	for path := range before {
		if _, ok := after[path]; !ok {
			problems = append(problems, fmt.Sprintf("HOME/%s was removed during the tests", path))
		}
	}
	slices.Sort(problems)
	return problems
}

func gitStatus() (string, error) {
	out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=all").Output()
	return string(out), err
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// testEvent is one line of go test -json (cmd/test2json).
type testEvent struct {
	Action, Package, Test, Output string
	Elapsed                       float64
}

// goTest runs go test -json with the arguments, keeps the stream in a file and prints
// what plain go test would (package results, the output of failures) plus every skipped
// test with its reason. A skip without a reason is an error.
func goTest(work string, env, args []string) error {
	jsonPath := filepath.Join(work, "test.json")
	out, err := os.Create(jsonPath)
	if err != nil {
		return err
	}
	defer out.Close()
	fmt.Printf("== go test -json %s (full output: %s)\n", strings.Join(args, " "), jsonPath)
	cmd := exec.Command("go", append([]string{"test", "-json"}, args...)...)
	cmd.Env, cmd.Stderr = env, os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	skipped, unexplained := report(io.TeeReader(stdout, out))
	switch err := cmd.Wait(); {
	case err != nil:
		return fmt.Errorf("go test: %w", err)
	case unexplained > 0:
		return fmt.Errorf("%d tests skipped without saying why", unexplained)
	case wantSkip != "" && !slices.Contains(skipped, wantSkip):
		return fmt.Errorf("%s did not skip (-want-skip)", wantSkip)
	}
	return nil
}

// report reads the event stream and prints results as they come; it returns the number
// the names of the skipped tests and how many of them gave no reason.
func report(r io.Reader) (skipped []string, unexplained int) {
	outputs := map[string][]string{}
	var skips []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e testEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text()) // not an event: the go command's own message
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			outputs[key] = append(outputs[key], e.Output)
		case "fail":
			fmt.Printf("--- FAIL %s\n%s", key, strings.Join(outputs[key], ""))
		case "skip":
			if e.Test == "" {
				break // a package without tests
			}
			reason := skipReason(outputs[key])
			if reason == "" {
				unexplained++
				reason = "NO REASON GIVEN"
			}
			skips = append(skips, fmt.Sprintf("SKIP %s: %s", key, reason))
			skipped = append(skipped, e.Test)
		case "pass":
			if e.Test == "" {
				fmt.Printf("ok   %s %.1fs\n", e.Package, e.Elapsed)
			}
		}
		if e.Action == "pass" || e.Action == "fail" || e.Action == "skip" {
			delete(outputs, key)
		}
	}
	fmt.Printf("== %d skipped tests\n", len(skips))
	for _, s := range skips {
		fmt.Println(s)
	}
	return skipped, unexplained
}

// skipReason is what a skipped test printed, apart from the lines go test adds.
func skipReason(lines []string) string {
	var reason []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		reason = append(reason, t)
	}
	return strings.Join(reason, " / ")
}
