package main

import (
	"bytes"
	"fmt"
	"os"
)

// The README's quoted run sits between these markers; -readme replaces it.
const (
	readmeBegin = "<!-- bench output: written by go run ./integration/bench -readme README.md -->"
	readmeEnd   = "<!-- end of bench output -->"
)

// writeReadme puts the report, as a code block, between the markers in the file at path.
func writeReadme(path string, rep *Report) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	i, j := bytes.Index(doc, []byte(readmeBegin)), bytes.Index(doc, []byte(readmeEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q … %q block", path, readmeBegin, readmeEnd)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(readmeBegin)])
	out.WriteString("\n\n```text")
	rep.print(&out)
	out.WriteString("```\n\n")
	out.Write(doc[j:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}
