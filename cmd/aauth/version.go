package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

const versionUsage = `usage: aauth version

Prints the module version of aauth (v1.2.3 when installed with go install …@v1.2.3,
"(devel)" for a build from a checkout), the VCS revision when the build recorded one,
and the Go version it was built with.
`

// readBuildInfo is debug.ReadBuildInfo; tests replace it.
var readBuildInfo = debug.ReadBuildInfo

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", versionUsage, stderr)
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "version", "unexpected argument %q", pos[0])
	}
	fmt.Fprintln(stdout, versionString())
	return exitOK
}

// versionString is "aauth <version> [(<revision>[, modified])] <go version>".
func versionString() string {
	version, goVersion, rev, modified := "(unknown)", runtime.Version(), "", false
	if bi, ok := readBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	s := "aauth " + version
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified {
			rev += ", modified"
		}
		s += " (" + rev + ")"
	}
	return s + " " + goVersion
}
