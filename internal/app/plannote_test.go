package app

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/distribute"
)

// The text plan shows what the node holds in a file's place when plan
// could not show a diff (a link, a file too large), and the state files
// it did not read.
func TestWritePlanNotes(t *testing.T) {
	r := &distribute.PlanResult{Nodes: []*distribute.NodePlan{{
		Node: "n1", Address: "10.0.0.1:22", Generation: "g2", CurrentGeneration: "g1",
		Unread: []string{"/var/lib/mtlsctl/manifest.json is a symbolic link"},
		Files: []distribute.FilePlan{
			{Path: "/etc/consul.d/mtlsctl-services.json", Kind: "service", Action: distribute.ActionChange,
				Note: "is a symbolic link to /root/secret; apply replaces the link (its target is not read or changed)"},
			{Path: "/etc/consul.d/big.json", Kind: "other", Action: distribute.ActionChange,
				Note: "changed, too large to diff (3145728 bytes, sha256 abc)"},
		},
	}}}
	var b bytes.Buffer
	writePlan(&b, r)
	for _, want := range []string{
		"  ~ /etc/consul.d/mtlsctl-services.json (service)\n      is a symbolic link to /root/secret; apply replaces the link",
		"  ~ /etc/consul.d/big.json (other)\n      changed, too large to diff (3145728 bytes, sha256 abc)",
		"  not read: /var/lib/mtlsctl/manifest.json is a symbolic link (taken as absent; apply replaces it)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan text does not say %q:\n%s", want, b.String())
		}
	}
}
