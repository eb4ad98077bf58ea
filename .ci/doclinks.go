//go:build ignore

// Command doclinks.go checks the links of the repository's Markdown files: every
// relative link must name a file or folder that exists, and every #anchor (in the same
// file or another .md file) must name a heading there, by GitHub's rules (lowercase,
// spaces to -, punctuation other than - and _ dropped, -1, -2… for repeats).
//
//	go run .ci/doclinks.go        # from the repository root; exit status 1 on a broken link
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

var (
	linkRE    = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	headingRE = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	codeRE    = regexp.MustCompile("`[^`]*`")
)

// anchor is GitHub's anchor for a heading's text.
func anchor(h string) string {
	h = strings.ToLower(h)
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// scan returns a file's links (outside code blocks and inline code) and its anchors.
func scan(path string) (links []string, anchors map[string]bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	anchors = map[string]bool{}
	seen := map[string]int{}
	fence := ""
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			switch {
			case fence == "":
				fence = trimmed[:3]
			case strings.HasPrefix(trimmed, fence):
				fence = ""
			}
			continue
		}
		if fence != "" {
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			a := anchor(m[2])
			if n := seen[a]; n > 0 {
				anchors[fmt.Sprintf("%s-%d", a, n)] = true
			} else {
				anchors[a] = true
			}
			seen[a]++
		}
		for _, m := range linkRE.FindAllStringSubmatch(codeRE.ReplaceAllString(line, ""), -1) {
			links = append(links, m[1])
		}
	}
	return links, anchors, nil
}

func main() {
	out, err := exec.Command("git", "ls-files", "*.md").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "doclinks: git ls-files:", err)
		os.Exit(2)
	}
	files := strings.Fields(string(out))
	if len(os.Args) > 1 {
		files = os.Args[1:]
	}
	anchorsOf := map[string]map[string]bool{}
	getAnchors := func(p string) (map[string]bool, error) {
		if a, ok := anchorsOf[p]; ok {
			return a, nil
		}
		_, a, err := scan(p)
		anchorsOf[p] = a
		return a, err
	}
	bad := 0
	for _, f := range files {
		links, _, err := scan(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "doclinks:", err)
			os.Exit(2)
		}
		for _, l := range links {
			if strings.Contains(l, "://") || strings.HasPrefix(l, "mailto:") {
				continue
			}
			target, frag, _ := strings.Cut(l, "#")
			p := f
			if target != "" {
				p = filepath.Join(filepath.Dir(f), target)
				if _, err := os.Stat(p); err != nil {
					fmt.Printf("%s: %s: no such file\n", f, l)
					bad++
					continue
				}
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(p, ".md") {
				fmt.Printf("%s: %s: an anchor into a file that is not Markdown\n", f, l)
				bad++
				continue
			}
			a, err := getAnchors(p)
			if err != nil || !a[frag] {
				fmt.Printf("%s: %s: no such heading\n", f, l)
				bad++
			}
		}
	}
	if bad > 0 {
		fmt.Printf("doclinks: %d broken links\n", bad)
		os.Exit(1)
	}
	fmt.Printf("doclinks: the links of %d files resolve\n", len(files))
}
