package distribute

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
)

func TestPlanEmptyThenUnchangedThenChanged(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "n1", server: true}, nodeSpec{name: "n2"})
	b := f.bundles("")
	p, err := f.plan(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Changes() {
		t.Fatal("plan on empty nodes has no changes")
	}
	for _, np := range p.Nodes {
		for _, fp := range np.Files {
			if fp.Action != ActionCreate {
				t.Errorf("%s %s: action %s, want create", np.Node, fp.Path, fp.Action)
			}
			if strings.Contains(fp.Diff, f.gossip) {
				t.Errorf("%s: diff shows the gossip key", fp.Path)
			}
			if fp.Kind == consulcfg.KindKey && fp.Diff != "" {
				t.Errorf("%s: diff for a key", fp.Path)
			}
		}
	}
	if f.stagingLeft("n1") != nil || f.readNode("n1", "/etc/consul.d/consul.json") != "" {
		t.Fatal("plan changed a node")
	}
	if _, err := f.apply(t, b, f.opts()); err != nil {
		t.Fatal(err)
	}
	p, err = f.plan(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if p.Changes() {
		t.Errorf("plan after apply has changes: %+v", p.Nodes[0].Files)
	}

	b2 := f.bundles("-changed")
	p, err = f.plan(t, b2, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !p.Changes() {
		t.Fatal("changed bundle: no changes")
	}
	byPath := map[string]FilePlan{}
	for _, fp := range p.Nodes[0].Files {
		byPath[fp.Path] = fp
	}
	tests := []struct {
		path, action string
		check        func(FilePlan) string
	}{
		{"/etc/consul.d/consul.json", "change", func(fp FilePlan) string {
			if !strings.Contains(fp.Diff, "+  \"log_level\": \"INFO-changed\"") || strings.Contains(fp.Diff, f.gossip) ||
				!strings.Contains(fp.Diff, GossipFingerprint(f.gossip)) {
				return "diff:\n" + fp.Diff
			}
			return ""
		}},
		{"/etc/consul.d/services.json", "unchanged", nil},
		{"/etc/consul.d/tls/ca.pem", "unchanged", nil},
		{"/etc/consul.d/tls/agent.pem", "change", func(fp FilePlan) string {
			if fp.OldFingerprint == "" || fp.NewFingerprint == "" || fp.OldFingerprint == fp.NewFingerprint || fp.Diff != "" {
				return "fingerprints " + fp.OldFingerprint + " -> " + fp.NewFingerprint
			}
			return ""
		}},
		{"/etc/consul.d/tls/agent-key.pem", "change", func(fp FilePlan) string {
			if fp.Diff != "" || fp.OldFingerprint != "" {
				return "key content shown"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			fp := byPath[tt.path]
			if string(fp.Action) != tt.action {
				t.Fatalf("action %s, want %s", fp.Action, tt.action)
			}
			if tt.check != nil {
				if msg := tt.check(fp); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

func TestApplyThenReapplyIsNoop(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", server: true}, nodeSpec{name: "s2", server: true}, nodeSpec{name: "c1"})
	b := f.bundles("")
	res, err := f.apply(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Fatal("first apply changed nothing")
	}
	for i, n := range f.topo.Nodes {
		for _, file := range b[i].Files {
			if got := f.readNode(n.Name, file.Path); got != string(file.Content) {
				t.Errorf("%s:%s not written", n.Name, file.Path)
			}
			fi, err := os.Stat(f.servers[n.Name].Path(file.Path))
			if err == nil && fi.Mode().Perm() != file.Mode.Perm() {
				t.Errorf("%s:%s mode %v, want %v", n.Name, file.Path, fi.Mode().Perm(), file.Mode.Perm())
			}
		}
		if got := strings.TrimSpace(f.readNode(n.Name, "/var/lib/mtlsctl/generation")); got != b[i].Generation {
			t.Errorf("%s: generation %q, want %q", n.Name, got, b[i].Generation)
		}
		if left := f.stagingLeft(n.Name); left != nil {
			t.Errorf("%s: left behind %v", n.Name, left)
		}
		// A node's first apply starts the agent: restart, not reload.
		if calls := systemctlCalls(f.servers[n.Name]); len(calls) != 1 || calls[0] != "systemctl restart consul" {
			t.Errorf("%s: calls %q", n.Name, calls)
		}
		if na := res.node(n.Name); na.Outcome != OutcomeDone || na.Action != "restart" {
			t.Errorf("%s: outcome %s action %s", n.Name, na.Outcome, na.Action)
		}
	}
	if _, err := os.Stat(f.journal + "/" + journalName); !os.IsNotExist(err) {
		t.Errorf("journal left after a complete apply: %v", err)
	}

	res, err = f.apply(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed {
		t.Error("second apply reports changes")
	}
	for _, n := range f.topo.Nodes {
		if calls := systemctlCalls(f.servers[n.Name]); len(calls) != 1 {
			t.Errorf("%s: second apply ran %q", n.Name, calls)
		}
		if res.node(n.Name).Outcome != OutcomeUnchanged {
			t.Errorf("%s: outcome %s", n.Name, res.node(n.Name).Outcome)
		}
	}
}

func TestPlanUnreachableNode(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "up"}, nodeSpec{name: "down"})
	f.servers["down"].Close()
	p, err := f.plan(t, f.bundles(""), f.opts())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	var ne *NodeError
	if !errors.As(err, &ne) || ne.Node != "down" {
		t.Errorf("err %v does not name the node", err)
	}
	if p.Nodes[0].Err != nil || len(p.Nodes[0].Files) != 5 {
		t.Errorf("reachable node not planned: %v", p.Nodes[0].Err)
	}
	if p.Nodes[1].Err == nil || p.Nodes[1].Error == "" {
		t.Error("unreachable node has no error")
	}
}

func TestStagingFailureChangesNothing(t *testing.T) {
	tests := []struct {
		name  string
		fault sshsandbox.Fault
		want  error
	}{
		{"connection dropped during upload", sshsandbox.Fault{DropOnWrite: true}, ErrUnreachable},
		{"disk full", sshsandbox.Fault{DiskFullAfter: 300}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nodeSpec{name: "a", server: true}, nodeSpec{name: "b"}, nodeSpec{name: "c"})
			old := f.bundles("")
			if _, err := f.apply(t, old, f.opts()); err != nil {
				t.Fatal(err)
			}
			f.servers["b"].SetFault(tt.fault)
			nb := f.bundles("-new")
			res, err := f.apply(t, nb, f.opts())
			if err == nil {
				t.Fatal("apply succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			var ne *NodeError
			if !errors.As(err, &ne) || ne.Node != "b" {
				t.Errorf("err %v does not name node b", err)
			}
			for i, n := range f.topo.Nodes {
				for _, file := range old[i].Files {
					if f.readNode(n.Name, file.Path) != string(file.Content) {
						t.Errorf("%s:%s changed", n.Name, file.Path)
					}
				}
				if left := f.stagingLeft(n.Name); left != nil {
					t.Errorf("%s: left behind %v", n.Name, left)
				}
				if len(systemctlCalls(f.servers[n.Name])) != 1 {
					t.Errorf("%s: reloaded after failed staging", n.Name)
				}
			}
			if res.node("a").Outcome != OutcomeRolledBack || res.node("b").Outcome != OutcomeFailed {
				t.Errorf("outcomes a=%s b=%s", res.node("a").Outcome, res.node("b").Outcome)
			}
			if _, err := os.Stat(f.journal + "/" + journalName); !os.IsNotExist(err) {
				t.Errorf("journal kept after a clean rollback: %v", err)
			}
			// The fault gone, a re-run converges.
			f.servers["b"].SetFault(sshsandbox.Fault{})
			if _, err := f.apply(t, nb, f.opts()); err != nil {
				t.Fatal(err)
			}
			for i, n := range f.topo.Nodes {
				if f.readNode(n.Name, "/etc/consul.d/consul.json") != string(nb[i].Files[0].Content) {
					t.Errorf("%s: not converged", n.Name)
				}
			}
		})
	}
}

func TestApplyChoosesReloadOrRestart(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", server: true}, nodeSpec{name: "c1"})
	if _, err := f.apply(t, f.bundles(""), f.opts()); err != nil {
		t.Fatal(err)
	}
	// Changing the datacenter of c1 only: c1 restarts; s1 changes only its
	// log level (and key file): s1 reloads.
	b := f.bundles("-debug")
	for i := range b {
		if b[i].Node != "c1" {
			continue
		}
		for j := range b[i].Files {
			if b[i].Files[j].Kind == consulcfg.KindConfig {
				content := strings.Replace(string(b[i].Files[j].Content), `"dc1"`, `"dc2"`, 1)
				b[i].Files[j] = consulcfg.NewFile(b[i].Files[j].Path, []byte(content), b[i].Files[j].Mode, consulcfg.KindConfig)
			}
		}
		b[i].Seal()
	}
	res, err := f.apply(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"s1": "reload", "c1": "restart"}
	for node, action := range want {
		if got := res.node(node).Action; got != action {
			t.Errorf("%s: action %q, want %q", node, got, action)
		}
		calls := systemctlCalls(f.servers[node])
		if len(calls) != 2 || calls[1] != "systemctl "+action+" consul" {
			t.Errorf("%s: calls %q, want the second to be %s", node, calls, action)
		}
	}
}

// Missing parent directories of a target are created 0755, not 0700 (the
// steps run under umask 077): a non-root agent must be able to reach, say,
// /opt/apigee/apigee-mtls/certs.
func TestApplyCreatesParents0755(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "s1", server: true})
	b := f.bundles("")
	for i := range b {
		b[i].Files = append(b[i].Files, consulcfg.NewFile("/opt/apigee/apigee-mtls/certs/ca_cert.pem", f.caPEM, 0o644, consulcfg.KindCACert))
		b[i].Seal()
	}
	if _, err := f.apply(t, b, f.opts()); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/opt/apigee", "/opt/apigee/apigee-mtls", "/opt/apigee/apigee-mtls/certs"} {
		fi, err := os.Stat(f.servers["s1"].Path(d))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s is %04o, want 0755", d, fi.Mode().Perm())
		}
	}
}
