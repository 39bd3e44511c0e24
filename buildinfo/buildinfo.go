// Package buildinfo reports the version of this build of bevygap, for logs, the User-Agent of
// outgoing HTTP calls and "bevygap version".
package buildinfo

import "runtime/debug"

// Version returns the module version this binary was built from ("v1.2.3" when installed with
// go install …@version), the VCS revision for a build from a checkout ("devel+abc123def456"),
// or "devel" when neither is known.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel+" + s.Value[:12]
		}
	}
	return "devel"
}

// UserAgent is the User-Agent header value bevygap sends on outgoing HTTP requests.
func UserAgent() string { return "bevygap-go/" + Version() }
