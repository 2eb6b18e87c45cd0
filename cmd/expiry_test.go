package cmd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// edge5Copy copies the edge-5 example to a temporary cluster file and
// returns it with a state path beside it (not created).
func edge5Copy(t *testing.T) (inv, state string) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	dir := t.TempDir()
	inv = filepath.Join(dir, "cluster.yaml")
	data, err := os.ReadFile(example("edge-5"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return inv, filepath.Join(dir, "state")
}

// check-expiration from the state: exit 0 when every certificate is ok, 4
// when one only expires within --warn-days, each warning naming the
// command that renews it (never generate); text and JSON say the same.
func TestCheckExpirationExitCodes(t *testing.T) {
	inv, state := edge5Copy(t)
	if code, _, errOut := run(t, "-i", inv, "--state", state, "generate"); code != 0 {
		t.Fatalf("generate: %s", errOut)
	}
	at := func(args ...string) []string {
		return append([]string{"-i", inv, "--state", state}, args...)
	}

	code, out, errOut := run(t, at("certs", "check-expiration")...)
	if code != 0 || errOut != "" || !strings.Contains(out, "6 certificate(s): 6 ok") {
		t.Errorf("all ok: exit %d\n%s\n%s", code, out, errOut)
	}

	// Leaves (365 days) within the window, the CA (1825 days) not.
	code, out, errOut = run(t, at("certs", "check-expiration", "--warn-days", "400")...)
	if code != 4 {
		t.Errorf("leaves within --warn-days: exit %d, want 4\n%s\n%s", code, out, errOut)
	}
	if want := "run `mtlsctl rotate certs --nodes n1,n2,n3,n4,n5`"; !strings.Contains(out, want) {
		t.Errorf("no %q:\n%s", want, out)
	}
	if strings.Contains(out+errOut, "mtlsctl generate") {
		t.Errorf("generate does not renew early, yet it is suggested:\n%s%s", out, errOut)
	}
	if !regexpMatch(`(?m)^n1\s+server\s+CN=server\.dc-1\.consul\s+\S+ \S+ UTC\s+36[45]\s+warning$`, out) || !regexpMatch(`(?m)^n4\s+client\s+`, out) {
		t.Errorf("rows lack role, days left or state:\n%s", out)
	}
	if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "mtlsctl: warning: 5 certificate(s) expire within 400 days") {
		t.Errorf("stderr: want one warning line:\n%s", errOut)
	}

	// The CA too: its fix is rotate ca. JSON carries the same facts.
	code, out, _ = run(t, at("-o", "json", "certs", "check-expiration", "--warn-days", "2000")...)
	if code != 4 {
		t.Errorf("CA within --warn-days: exit %d, want 4", code)
	}
	var doc struct {
		Certificates []app.ExpiryRow
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rows := doc.Certificates
	if len(rows) != 6 || rows[0].Name != "ca" || rows[0].State != app.ExpiryWarn || rows[0].Fix != "mtlsctl rotate ca" || rows[0].Server != nil {
		t.Errorf("CA row %+v", rows[0])
	}
	for _, r := range rows[1:] {
		if r.Server == nil || r.DaysLeft == nil || r.NotAfter == nil || r.Expired == nil || *r.Expired || r.State != app.ExpiryWarn || r.Fix != "mtlsctl rotate certs --nodes "+r.Name || r.Reachable != nil {
			t.Errorf("node row %+v", r)
		}
	}
	if !*rows[1].Server || *rows[4].Server {
		t.Errorf("server flags: n1 %v n4 %v", *rows[1].Server, *rows[4].Server)
	}
	code, out, _ = run(t, at("certs", "check-expiration", "--warn-days", "2000")...)
	if code != 4 || !strings.Contains(out, "ca: expires in ") || !strings.Contains(out, "run `mtlsctl rotate ca`") {
		t.Errorf("text: exit %d\n%s", code, out)
	}

	// --nodes limits the node rows; an unknown one is a usage error.
	if code, out, _ = run(t, at("certs", "check-expiration", "--nodes", "n2")...); code != 0 || strings.Contains(out, "n1 ") || !strings.Contains(out, "n2 ") {
		t.Errorf("--nodes n2: exit %d\n%s", code, out)
	}
	if code, _, _ = run(t, at("certs", "check-expiration", "--nodes", "n9")...); code != 3 {
		t.Errorf("--nodes n9: exit %d, want 3", code)
	}
}

// A node removed from the cluster file is not listed by check-expiration,
// and the next generate archives its certificate and says where.
func TestRemovedNodeArchived(t *testing.T) {
	inv, state := edge5Copy(t)
	at := func(args ...string) []string { return append([]string{"-i", inv, "--state", state}, args...) }
	if code, _, errOut := run(t, at("generate")...); code != 0 {
		t.Fatalf("generate: %s", errOut)
	}
	topo, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	dc := &topo.Cluster.Datacenters[0]
	var kept []*inventory.Node
	for _, n := range dc.Nodes {
		if n.Name != "n5" {
			kept = append(kept, n)
		}
	}
	dc.Nodes = kept
	yml, err := inventory.Marshal(topo.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, yml, 0o644); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := run(t, at("certs", "check-expiration")...)
	if code != 0 || regexpMatch(`(?m)^n5\s`, out) {
		t.Errorf("removed node listed, or exit %d:\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = run(t, at("-o", "json", "generate")...)
	if code != 0 {
		t.Fatalf("generate: exit %d\n%s", code, errOut)
	}
	var rep struct {
		Removed  []string `json:"removed"`
		Archived []struct{ Node, Path string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Archived) != 1 || rep.Archived[0].Node != "n5" || !strings.HasPrefix(rep.Archived[0].Path, filepath.Join(state, "nodes", ".archive", "n5-")) {
		t.Fatalf("generate JSON: %s", out)
	}
	if _, err := os.Stat(filepath.Join(rep.Archived[0].Path, "key.pem")); err != nil {
		t.Errorf("archived key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "nodes", "n5")); !os.IsNotExist(err) {
		t.Errorf("nodes/n5 still there: %v", err)
	}
	// The text report says it (here: a node removed again after a re-add).
	data, err := os.ReadFile(example("edge-5"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inv, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, at("generate")...); code != 0 {
		t.Fatalf("generate: %s", errOut)
	}
	if err := os.WriteFile(inv, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = run(t, at("generate")...)
	if code != 0 || !regexpMatch(`archived the certificate of removed node n5 to .*/nodes/\.archive/n5-\d{8}T\d{6}Z`, out) {
		t.Errorf("generate text: exit %d\n%s", code, out)
	}
	if m, _ := filepath.Glob(filepath.Join(state, "nodes", ".archive", "n5-*")); len(m) != 2 {
		t.Errorf("archives %v, want both kept", m)
	}
}

// The exit code of a warning is 4 wherever it is wrapped; a reported
// failure stays 1.
func TestExitCodeWarning(t *testing.T) {
	if c := exitCode(fmt.Errorf("check: %w", app.ExpiryWarning{Certs: 1, WarnDays: 30})); c != 4 {
		t.Errorf("warning: exit %d, want 4", c)
	}
	if c := exitCode(fmt.Errorf("%w: 1 expired", app.ErrReported)); c != 1 {
		t.Errorf("failure: exit %d, want 1", c)
	}
}
