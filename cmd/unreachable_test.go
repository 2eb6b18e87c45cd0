package cmd

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// downNodes rewrites the cluster file inv so that the named nodes point at
// a loopback port nothing listens on: they are unreachable (connection
// refused) while the others keep their sandbox servers. It returns the
// text that is in each down node's error and nowhere else.
func downNodes(t *testing.T, inv string, names ...string) map[string]string {
	t.Helper()
	topo, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	marks := map[string]string{}
	for _, name := range names {
		n := topo.Node(name)
		if n == nil {
			t.Fatalf("no node %s in %s", name, inv)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.SSHPort = l.Addr().(*net.TCPAddr).Port
		l.Close()
		marks[name] = fmt.Sprintf("dial tcp 127.0.0.1:%d", n.SSHPort)
	}
	yml, err := inventory.Marshal(topo.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	return marks
}

// saidOnce checks that each down node's error is in the combined output
// exactly once.
func saidOnce(t *testing.T, marks map[string]string, out, errOut string) {
	t.Helper()
	for node, m := range marks {
		if n := strings.Count(out+errOut, m); n != 1 {
			t.Errorf("the error of %s is said %d times, want once:\nstdout:\n%s\nstderr:\n%s", node, n, out, errOut)
		}
	}
}

// With two of five nodes down, each command says each node's error once,
// plan's summary counts the nodes it could not inspect, and the rotations
// refuse before they change anything, the state directory included.
func TestUnreachableNodesSaidOnce(t *testing.T) {
	inv, state := sandboxCluster(t)
	marks := downNodes(t, inv, "n2", "n4")
	at := func(args ...string) []string { return append([]string{"-i", inv, "--state", state}, args...) }

	t.Run("plan", func(t *testing.T) {
		code, out, errOut := run(t, at("plan", "--skip-live", "--timeout", "3s")...)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		saidOnce(t, marks, out, errOut)
		if want := "2 of 5 node(s) could not be inspected (errors above); 3 of the 3 inspected have changes to apply"; !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
		if strings.Contains(out, "of 5 node(s) have changes") {
			t.Errorf("summary counts the unreachable nodes as without changes:\n%s", out)
		}
		if want := "mtlsctl: failed (see the report above): 2 of 5 node(s) could not be inspected\n"; errOut != want {
			t.Errorf("stderr %q, want the one summary line %q", errOut, want)
		}
	})
	t.Run("plan json", func(t *testing.T) {
		code, out, errOut := run(t, at("-o", "json", "plan", "--skip-live", "--timeout", "3s")...)
		if code != 1 || !json.Valid([]byte(out)) {
			t.Fatalf("exit %d, stdout JSON %v\n%s", code, json.Valid([]byte(out)), errOut)
		}
		saidOnce(t, marks, out, errOut)
	})
	t.Run("status", func(t *testing.T) {
		// The live section asks every agent (the sandbox has none): the
		// down nodes are marked there, not quoted again.
		code, out, errOut := run(t, at("status", "--timeout", "3s")...)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		saidOnce(t, marks, out, errOut)
		if !strings.Contains(out, "unreachable (see above)") {
			t.Errorf("live tables do not mark the unreachable nodes:\n%s", out)
		}
	})
	t.Run("check-expiration --remote", func(t *testing.T) {
		code, out, errOut := run(t, at("certs", "check-expiration", "--remote", "--timeout", "3s")...)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		saidOnce(t, marks, out, errOut)
		if strings.Contains(out, "0001-01-01") || !regexpMatch(`(?m)^n2\s+server\s+-\s+-\s+-\s+unreachable$`, out) {
			t.Errorf("n2's row should say unreachable with no expiry:\n%s", out)
		}
	})
	t.Run("check-expiration --remote json", func(t *testing.T) {
		code, out, errOut := run(t, at("-o", "json", "certs", "check-expiration", "--remote", "--timeout", "3s")...)
		if code != 1 {
			t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
		}
		saidOnce(t, marks, out, errOut)
		var doc struct {
			Certificates []map[string]any
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		rows := doc.Certificates
		for _, r := range rows {
			name := r["name"].(string)
			if _, down := marks[name]; !down {
				if r["reachable"] != true {
					t.Errorf("%s: %v", name, r)
				}
				continue
			}
			if r["reachable"] != false || r["state"] != "unreachable" || r["error"] == nil {
				t.Errorf("%s: reachable/state/error %v %v %v", name, r["reachable"], r["state"], r["error"])
			}
			for _, unknown := range []string{"not_after", "not_before", "days_left", "expired"} {
				if v, ok := r[unknown]; ok {
					t.Errorf("%s: %s is unknown, yet given as %v", name, unknown, v)
				}
			}
		}
	})
	for _, rot := range []string{"certs", "ca", "gossip", "tokens"} {
		t.Run("rotate "+rot, func(t *testing.T) {
			before := treeHash(t, state)
			code, out, errOut := run(t, at("rotate", rot, "--yes", "--timeout", "3s")...)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
			}
			saidOnce(t, marks, out, errOut)
			if !strings.Contains(errOut, "rotate "+rot+" refused: 2 of 5 node(s) could not be reached (n2, n4); nothing was changed") {
				t.Errorf("stderr should name the nodes and say nothing changed:\n%s", errOut)
			}
			if after := treeHash(t, state); after != before {
				t.Error("the state directory changed")
			}
		})
	}
}
