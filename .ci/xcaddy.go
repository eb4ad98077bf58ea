//go:build ignore

// Command xcaddy.go turns xcaddy.json (our build manifest; xcaddy itself reads no file)
// into an xcaddy build and checks that the result lists the expected modules.
//
//	go run .ci/xcaddy.go          # build with xcaddy from the local checkout, then check
//
// The plugins' module is not published, so the build points xcaddy at this checkout with
// a replacement and lets an empty file proxy answer "not found" for the probes Go makes
// of the sub-package paths (see README, "Build with xcaddy").
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

type manifest struct {
	CaddyVersion string `json:"caddy_version"`
	Plugins      []struct {
		ModulePath string `json:"module_path"`
		Version    string `json:"version"`
	} `json:"plugins"`
	Replacements []struct {
		Old string `json:"old"`
		New string `json:"new"`
	} `json:"replacements"`
	Output          string   `json:"output"`
	ExpectedModules []string `json:"expected_modules"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "xcaddy build check:", err)
		os.Exit(1)
	}
}

func run() error {
	b, err := os.ReadFile("xcaddy.json")
	if err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("xcaddy.json: %w", err)
	}
	args := []string{"build", m.CaddyVersion}
	for _, p := range m.Plugins {
		args = append(args, "--with", p.ModulePath+"@"+p.Version)
	}
	for _, r := range m.Replacements {
		abs, err := filepath.Abs(r.New)
		if err != nil {
			return err
		}
		args = append(args, "--replace", r.Old+"="+abs)
	}
	out, err := filepath.Abs(m.Output)
	if err != nil {
		return err
	}
	args = append(args, "--output", out)

	empty, err := os.MkdirTemp("", "emptyproxy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(empty)
	proxy, err := exec.Command("go", "env", "GOPROXY").Output()
	if err != nil {
		return err
	}
	first := strings.Split(strings.TrimSpace(string(proxy)), ",")[0]
	xcaddy := os.Getenv("XCADDY")
	if xcaddy == "" {
		xcaddy = "xcaddy"
	}
	fmt.Println("+", xcaddy, strings.Join(args, " "))
	cmd := exec.Command(xcaddy, args...)
	cmd.Env = append(os.Environ(), "GOPROXY="+first+"|file://"+empty)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("xcaddy: %w", err)
	}
	list, err := exec.Command(out, "list-modules").Output()
	if err != nil {
		return fmt.Errorf("list-modules: %w", err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(list), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, want := range m.ExpectedModules {
		if !have[want] {
			return fmt.Errorf("module %s missing from %s list-modules", want, out)
		}
		fmt.Println("ok: list-modules has", want)
	}
	return nil
}
