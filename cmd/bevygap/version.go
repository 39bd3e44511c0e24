package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/bevygap-go/bevygap/buildinfo"
)

// versionCommand is "bevygap version".
type versionCommand struct {
	env *Env
	nothingToClose
}

// ParseFlags accepts no flags and no arguments.
func (c *versionCommand) ParseFlags(args []string) error {
	fs := newFlagSet(c.env, "version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap version"}
	}
	return nil
}

// Run prints the version, the commit and the Go toolchain of this binary.
func (c *versionCommand) Run(context.Context) error {
	bi, ok := debug.ReadBuildInfo()
	_, err := io.WriteString(c.env.Stdout, versionText(buildinfo.Version(), bi, ok))
	return err
}

// versionText is what "bevygap version" prints: the version on the first line (what scripts
// read), then the module path and version, the commit and the Go toolchain, all from the build
// information the Go linker embeds. A binary built by `go install …@vX.Y.Z` has the module
// version but no VCS stamp: its commit is the tag's (or the one named by a pseudo-version).
func versionText(version string, bi *debug.BuildInfo, ok bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "bevygap %s\n", version)
	if !ok || bi == nil {
		b.WriteString("commit  unknown (no build information in this binary)\n")
		return b.String()
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	mod := bi.Main.Path
	if mod == "" {
		mod = "github.com/bevygap-go/bevygap"
	}
	modVersion := bi.Main.Version
	if modVersion == "" {
		modVersion = "(devel)"
	}
	fmt.Fprintf(&b, "module  %s %s\n", mod, modVersion)
	commit := set["vcs.revision"]
	switch {
	case commit != "":
		var notes []string
		if t := set["vcs.time"]; t != "" {
			notes = append(notes, t)
		}
		if set["vcs.modified"] == "true" {
			notes = append(notes, "with uncommitted changes")
		}
		if len(notes) > 0 {
			commit += " (" + strings.Join(notes, ", ") + ")"
		}
	case pseudoVersionRev(modVersion) != "":
		commit = pseudoVersionRev(modVersion) + " (from the pseudo-version)"
	case strings.HasPrefix(modVersion, "v") && modVersion != "(devel)":
		commit = "the tag " + strings.TrimSuffix(modVersion, "+incompatible")
	default:
		commit = "unknown (built without VCS information, e.g. -buildvcs=false)"
	}
	fmt.Fprintf(&b, "commit  %s\n", commit)
	goVersion := bi.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	goos, goarch := set["GOOS"], set["GOARCH"]
	if goos == "" || goarch == "" {
		goos, goarch = runtime.GOOS, runtime.GOARCH
	}
	fmt.Fprintf(&b, "go      %s %s/%s\n", goVersion, goos, goarch)
	return b.String()
}

// pseudoVersionRev returns the commit abbreviation of a Go pseudo-version
// (v0.0.0-20260102030405-abcdef123456, optionally with "+dirty"), or "" for other versions.
func pseudoVersionRev(v string) string {
	v, _, _ = strings.Cut(v, "+")
	i := strings.LastIndexByte(v, '-')
	if i < 0 || len(v)-i-1 != 12 {
		return ""
	}
	rev := v[i+1:]
	for _, c := range rev {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return ""
		}
	}
	// The part before the revision ends in a 14-digit UTC timestamp.
	ts := v[:i]
	if j := strings.LastIndexAny(ts, "-."); j >= 0 {
		ts = ts[j+1:]
	}
	if len(ts) != 14 {
		return ""
	}
	return rev
}
