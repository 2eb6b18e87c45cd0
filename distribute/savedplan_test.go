package distribute

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A saved plan is applied exactly: the files it lists land, and nothing
// else happens.
func TestSavedPlanApplied(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"}, nodeSpec{name: "b"})
	b := f.bundles("")
	p, err := f.plan(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := SavePlan(file, p); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("plan file mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(file)
	if strings.Contains(string(data), "PRIVATE KEY") || strings.Contains(string(data), f.gossip) {
		t.Fatal("the saved plan holds a secret")
	}
	loaded, err := LoadPlan(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Attach(b); err != nil {
		t.Fatal(err)
	}
	res := applyPlan(t, f, loaded)
	if !res.Changed {
		t.Fatal("nothing applied")
	}
	for i, n := range f.topo.Nodes {
		if f.readNode(n.Name, "/etc/consul.d/consul.json") != string(b[i].Files[0].Content) {
			t.Errorf("%s: plan not applied", n.Name)
		}
	}
}

// A node that changed after the plan makes apply refuse before anything
// is written anywhere.
func TestSavedPlanRefusedWhenANodeMoved(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"}, nodeSpec{name: "b"})
	b := f.bundles("")
	p, err := f.plan(t, b, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	// Someone edits b's config after the plan.
	target := f.servers["b"].Path("/etc/consul.d/consul.json")
	os.MkdirAll(filepath.Dir(target), 0o755)
	if err := os.WriteFile(target, []byte("{}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	s, err := Open(f.topo, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = s.Apply(ctx, p)
	if !errors.Is(err, ErrMoved) || !strings.Contains(err.Error(), "node b") {
		t.Fatalf("apply of a stale plan: %v, want ErrMoved naming node b", err)
	}
	if got := f.readNode("a", "/etc/consul.d/consul.json"); got != "" {
		t.Errorf("node a was changed although b moved: %q", got)
	}
	if got := f.readNode("b", "/etc/consul.d/consul.json"); got != "{}\n" {
		t.Errorf("node b's edit was overwritten: %q", got)
	}
	for _, n := range []string{"a", "b"} {
		if left := f.stagingLeft(n); left != nil {
			t.Errorf("%s: left behind %v", n, left)
		}
	}
}

// A plan made for other bundles (the state or the cluster file changed)
// is refused, naming the node.
func TestSavedPlanRefusedForOtherBundles(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"})
	p, err := f.plan(t, f.bundles(""), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := SavePlan(file, p); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadPlan(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Attach(f.bundles("-other")); !errors.Is(err, ErrStalePlan) || !strings.Contains(err.Error(), "node a") {
		t.Fatalf("Attach to other bundles: %v, want ErrStalePlan naming node a", err)
	}
	os.WriteFile(file, []byte("not json"), 0o600)
	if _, err := LoadPlan(file); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("LoadPlan of garbage: %v", err)
	}
}

// A node that already holds a generation but whose agent is stopped gets
// its agent started: the reload fails, and the restart command runs.
func TestStoppedAgentIsStarted(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"})
	if _, err := f.apply(t, f.bundles(""), f.opts()); err != nil {
		t.Fatal(err)
	}
	// The stand-in systemctl refuses a reload, as systemd does for an
	// inactive unit.
	shim := "#!/bin/sh\nprintf '%s\\n' \"systemctl $*\" >> \"$SANDBOX_CALLS\"\n[ \"$1\" = reload ] && { echo \"Job for consul.service failed: unit is not active\" >&2; exit 1; }\nexit 0\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(f.servers["a"].Root()), "bin", "systemctl"), []byte(shim), 0o755); err != nil {
		t.Fatalf("cannot replace the sandbox's systemctl: %v", err)
	}
	res, err := f.apply(t, f.bundles("-debug"), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if got := res.node("a").Action; got != "start" {
		t.Errorf("action %q, want start", got)
	}
	calls := systemctlCalls(f.servers["a"])
	if n := len(calls); n < 2 || calls[n-2] != "systemctl reload consul" || calls[n-1] != "systemctl restart consul" {
		t.Errorf("calls %q, want a reload then a restart", calls)
	}
}

func applyPlan(t *testing.T, f *fixture, p *PlanResult) *ApplyResult {
	t.Helper()
	s, err := Open(f.topo, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Apply(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	return res
}
