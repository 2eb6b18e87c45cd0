package inventory

import (
	"errors"
	"strings"
	"testing"
)

// sandboxYAML is baseYAML as `mtlsctl sandbox up` would write it: every node
// reached on 127.0.0.1, and the sandbox block.
func sandboxYAML(dir string) string {
	doc := strings.ReplaceAll(baseYAML, "components: [zookeeper, cassandra]\n", "components: [zookeeper, cassandra]\n        ssh_host: 127.0.0.1\n        ssh_port: 2201\n")
	doc = strings.Replace(doc, "components: [zookeeper, cassandra, postgres]\n", "components: [zookeeper, cassandra, postgres]\n        ssh_host: 127.0.0.1\n        ssh_port: 2203\n", 1)
	return doc + "sandbox:\n  dir: " + dir + "\n"
}

func TestSandboxBlockRoundTrips(t *testing.T) {
	top, err := Parse("sb.yaml", []byte(sandboxYAML("/tmp/sb")))
	if err != nil {
		t.Fatal(err)
	}
	if top.Cluster.Sandbox == nil || top.Cluster.Sandbox.Dir != "/tmp/sb" {
		t.Fatalf("sandbox = %+v, want dir /tmp/sb", top.Cluster.Sandbox)
	}
	out, err := Marshal(top.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if again.Cluster.Sandbox == nil || again.Cluster.Sandbox.Dir != "/tmp/sb" {
		t.Fatalf("after Marshal: sandbox = %+v\n%s", again.Cluster.Sandbox, out)
	}
	// A real cluster file has no sandbox block, and Marshal writes none.
	real, err := Parse("real.yaml", []byte(baseYAML))
	if err != nil {
		t.Fatal(err)
	}
	if out, _ := Marshal(real.Cluster); real.Cluster.Sandbox != nil || strings.Contains(string(out), "sandbox") {
		t.Fatalf("real cluster: sandbox %+v\n%s", real.Cluster.Sandbox, out)
	}
}

func TestSandboxBlockErrors(t *testing.T) {
	tests := []struct {
		name, doc, field, msg string
	}{
		{"relative dir", sandboxYAML("sb"), "sandbox.dir", `sandbox dir "sb" must be an absolute path`},
		{"missing dir", strings.Replace(sandboxYAML("/x"), "  dir: /x\n", "", 1), "sandbox.dir", "must be an absolute path"},
		{"unknown key", strings.Replace(sandboxYAML("/x"), "  dir: /x\n", "  dir: /x\n  dri: y\n", 1), "sandbox.dri", `unknown key "dri"`},
		// n2 keeps its real address: the sandbox block must not make
		// mtlsctl skip the live steps of a real node.
		{"node not on loopback", strings.Replace(sandboxYAML("/x"), "        ssh_host: 127.0.0.1\n        ssh_port: 2201\n", "", 1), "datacenters[0].nodes[0].ssh_host", `node n1: a sandbox node must be reached on 127.0.0.1, not "198.18.0.11"`},
		{"bastion", strings.Replace(sandboxYAML("/x"), "  user: root\n", "  user: root\n  bastion: jump.example.com\n", 1), "ssh.bastion", "remove the bastion"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("sb.yaml", []byte(tc.doc))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if p.Field == tc.field && strings.Contains(p.Msg, tc.msg) {
					if p.Line == 0 {
						t.Errorf("%s: no line", p.Field)
					}
					return
				}
			}
			t.Fatalf("no problem on %s containing %q in:\n%v", tc.field, tc.msg, err)
		})
	}
}
