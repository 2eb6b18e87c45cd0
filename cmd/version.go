package cmd

import (
	"runtime/debug"
)

// version is what --version prints: Version when the build set it, else
// the module version of the main module (a `go install ...@vX` build), else
// the VCS revision the binary was built from (short, "-dirty" when the tree
// had changes), each followed by the Go version.
func version() string {
	info, ok := debug.ReadBuildInfo()
	return versionOf(Version, info, ok)
}

func versionOf(set string, info *debug.BuildInfo, ok bool) string {
	if set != "" {
		return set
	}
	if !ok || info == nil {
		return "unknown (no build information)"
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		switch {
		case rev == "":
			v = "devel"
		case len(rev) > 12:
			v = rev[:12]
		default:
			v = rev
		}
		if rev != "" && modified == "true" {
			v += "-dirty"
		}
	}
	return v + " (" + info.GoVersion + ")"
}
