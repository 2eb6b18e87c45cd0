package distribute

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
)

// systemctlCalls is the server's call log without the `consul validate`
// checks that every apply runs before committing.
func systemctlCalls(s *sshsandbox.Server) []string {
	var out []string
	for _, c := range s.Calls() {
		if strings.HasPrefix(c, "systemctl ") {
			out = append(out, c)
		}
	}
	return out
}

// consulShim replaces the sandbox's consul stand-in: it records the call,
// lists the directory it was asked to validate into validate.ls beside the
// call log, and rejects any directory holding bad.json, as consul would.
const consulShim = `#!/bin/sh
printf '%s\n' "$(basename "$0") $*" >> "$SANDBOX_CALLS"
[ "$1" = validate ] || exit 0
ls "$2" > "$(dirname "$SANDBOX_CALLS")/validate.ls"
if [ -f "$2/bad.json" ]; then
  echo "Config validation failed: $2/bad.json: invalid character 'x' looking for beginning of value" >&2
  exit 1
fi
echo "Configuration is valid!"
`

func sandboxDir(s *sshsandbox.Server) string { return filepath.Dir(s.Root()) }

func TestConsulValidateBeforeCommit(t *testing.T) {
	tests := []struct {
		name     string
		noConsul bool   // remove the consul stand-in from the node
		badNode  string // node holding an extra, invalid config file
		wantErr  bool
	}{
		{name: "valid config is committed"},
		{name: "invalid config on one node commits nowhere", badNode: "n2", wantErr: true},
		{name: "no consul binary skips the check", noConsul: true, badNode: "n2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath("consul"); err == nil && tc.noConsul {
				t.Skip("this machine has consul on PATH; the sandbox node would find it")
			}
			f := newFixture(t, nodeSpec{name: "n1", server: true}, nodeSpec{name: "n2"})
			for name, srv := range f.servers {
				shim := filepath.Join(sandboxDir(srv), "bin", "consul")
				var err error
				if tc.noConsul {
					err = os.Remove(shim)
				} else {
					err = os.WriteFile(shim, []byte(consulShim), 0o755)
				}
				if err != nil {
					t.Fatal(err)
				}
				// A file the bundle does not manage: part of what the agent loads.
				os.MkdirAll(srv.Path("/etc/consul.d"), 0o755)
				extra := "extra.json"
				if name == tc.badNode {
					extra = "bad.json"
				}
				if err := os.WriteFile(srv.Path("/etc/consul.d/"+extra), []byte("{}\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			res, err := f.apply(t, f.bundles(""), f.opts())
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range f.topo.Nodes {
					if f.readNode(n.Name, "/var/lib/mtlsctl/generation") == "" {
						t.Errorf("%s: not committed", n.Name)
					}
					if tc.noConsul {
						continue
					}
					ls, _ := os.ReadFile(filepath.Join(sandboxDir(f.servers[n.Name]), "validate.ls"))
					got := strings.Fields(string(ls))
					// The overlay: the node's own files plus the staged config files.
					for _, want := range []string{"consul.json", "services.json", "extra.json"} {
						if !slices.Contains(got, want) {
							t.Errorf("%s: validated directory holds %v, want %s among them", n.Name, got, want)
						}
					}
				}
			} else {
				if err == nil {
					t.Fatal("apply succeeded with a config consul rejects")
				}
				if !errors.Is(err, ErrConsulValidate) {
					t.Errorf("error %v does not wrap ErrConsulValidate", err)
				}
				var ne *NodeError
				if !errors.As(err, &ne) || ne.Node != tc.badNode || ne.Op != "validate" {
					t.Errorf("error %v: want a NodeError for %s at step validate", err, tc.badNode)
				}
				if !strings.Contains(err.Error(), "/etc/consul.d/bad.json:") || strings.Contains(err.Error(), validatePrefix) {
					t.Errorf("error %q lacks consul's output", err)
				}
				if na := res.node(tc.badNode); na == nil || na.Outcome != OutcomeFailed {
					t.Errorf("%s outcome: %+v", tc.badNode, na)
				}
				for _, n := range f.topo.Nodes {
					if g := f.readNode(n.Name, "/var/lib/mtlsctl/generation"); g != "" {
						t.Errorf("%s: committed generation %s although validation failed elsewhere", n.Name, g)
					}
					if f.readNode(n.Name, "/etc/consul.d/consul.json") != "" {
						t.Errorf("%s: consul.json written", n.Name)
					}
					if left := f.stagingLeft(n.Name); left != nil {
						t.Errorf("%s: left behind %v", n.Name, left)
					}
					if len(systemctlCalls(f.servers[n.Name])) != 0 {
						t.Errorf("%s: reloaded after a failed validation", n.Name)
					}
				}
			}
			for _, n := range f.topo.Nodes {
				matches, _ := filepath.Glob(f.servers[n.Name].Path("/var/lib/mtlsctl/" + validatePrefix + "*"))
				if len(matches) > 0 {
					t.Errorf("%s: validation directory left: %v", n.Name, matches)
				}
				calls := strings.Join(f.servers[n.Name].Calls(), "\n")
				if tc.noConsul == strings.Contains(calls, "consul validate") {
					t.Errorf("%s: calls %q (consul present: %v)", n.Name, calls, !tc.noConsul)
				}
			}
		})
	}
}
