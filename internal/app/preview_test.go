package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// stateSnapshot is every file and directory under dir with its mode and
// content hash: "byte-identical" made checkable.
func stateSnapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return nil
			}
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", strings.TrimPrefix(p, dir), fi.Mode())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestPlanPreviewsGenerate: after a node is added and another moved in the
// cluster file, plan shows what generate would issue and which ports and
// files would change, without touching the state; apply then issues
// exactly that after the prompt and pushes.
func TestPlanPreviewsGenerate(t *testing.T) {
	c, d, _ := sandboxClusterWith(t)
	ctx := context.Background()
	full, err := os.ReadFile(c.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := inventory.Parse(c.Inventory, full)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster starts without n5 (its sandbox server waits unused).
	dc := &topo.Cluster.Datacenters[0]
	n5 := dc.Nodes[len(dc.Nodes)-1]
	dc.Nodes = dc.Nodes[:len(dc.Nodes)-1]
	writeCluster := func() {
		t.Helper()
		yml, err := inventory.Marshal(topo.Cluster)
		if err != nil {
			t.Fatal(err)
		}
		if err := atomicfile.WriteFile(c.Inventory, yml, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeCluster()
	if err := os.RemoveAll(c.State); err != nil {
		t.Fatal(err)
	}
	if err := Generate(c, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, c, d, ApplyOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}

	// n5 joins, n2 moves to a new address.
	dc.Nodes = append(dc.Nodes, n5)
	dc.Nodes[1].Address = "198.18.0.112"
	writeCluster()
	before := stateSnapshot(t, c.State)

	out := &bytes.Buffer{}
	pc := c
	pc.Stdout = out
	err = Plan(ctx, pc, d, PlanOptions{DetailedExit: true})
	if !errors.As(err, new(ChangesPending)) {
		t.Fatalf("plan --detailed-exitcode: %v, want changes pending\n%s", err, out)
	}
	text := out.String()
	for _, want := range []string{
		"generate first (computed in memory",
		"n5    create",
		"n2    reissue",
		"proxy ports to assign or move:",
		"(known after apply)",
		"node n5 (", // n5's files in the node plan
	} {
		if !strings.Contains(text, want) {
			t.Errorf("plan output lacks %q:\n%s", want, text)
		}
	}
	if got := stateSnapshot(t, c.State); got != before {
		t.Fatalf("plan changed the state directory:\nbefore:\n%s\nafter:\n%s", before, got)
	}

	// The same as JSON.
	out.Reset()
	pc.JSON = true
	if err := Plan(ctx, pc, d, PlanOptions{}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Generate *struct {
			Nodes []struct {
				Node, Action, Reason string
			}
			PortChanges []inventory.PortChange `json:"port_changes"`
		}
		Nodes []struct {
			Node  string
			Files []struct{ Path, Action string }
		}
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("plan -o json: %v\n%s", err, out)
	}
	if doc.Generate == nil {
		t.Fatalf("plan -o json has no generate section:\n%s", out)
	}
	actions := map[string]string{}
	for _, n := range doc.Generate.Nodes {
		actions[n.Node] = n.Action + ": " + n.Reason
	}
	if !strings.HasPrefix(actions["n5"], "created") || !strings.HasPrefix(actions["n2"], "reissued") || !strings.HasPrefix(actions["n1"], "kept") {
		t.Errorf("plan -o json generate actions: %v", actions)
	}
	n5Ports := false
	for _, pc := range doc.Generate.PortChanges {
		if pc.Node == "n5" && pc.Old == nil && len(pc.New) > 0 {
			n5Ports = true
		}
	}
	if !n5Ports {
		t.Errorf("plan -o json port changes lack n5's new ports: %+v", doc.Generate.PortChanges)
	}
	if got := stateSnapshot(t, c.State); got != before {
		t.Fatal("plan -o json changed the state directory")
	}

	// A saved plan cannot hold certificates not issued yet: refused, and
	// nothing is written.
	saved := filepath.Join(t.TempDir(), "plan.json")
	pc.JSON = false
	if err := Plan(ctx, pc, d, PlanOptions{Out: saved}); err == nil || !strings.Contains(err.Error(), "mtlsctl generate") {
		t.Errorf("plan -out before generate: %v, want a refusal naming generate", err)
	}
	if fileExists(saved) {
		t.Error("plan -out wrote a plan it refused")
	}
	if got := stateSnapshot(t, c.State); got != before {
		t.Fatal("plan -out changed the state directory")
	}

	// apply, answered no: nothing changes.
	ac := c
	ac.Interactive = true
	ac.Stdin = strings.NewReader("n\n")
	aout := &bytes.Buffer{}
	ac.Stdout = aout
	if err := Apply(ctx, ac, d, ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("apply answered no: %v", err)
	}
	if !strings.Contains(aout.String(), "generate first") {
		t.Errorf("apply's plan lacks the generate preview:\n%s", aout)
	}
	if got := stateSnapshot(t, c.State); got != before {
		t.Fatal("a cancelled apply changed the state directory")
	}

	// apply, answered yes: generate issues what the plan said, then pushes.
	ac.Stdin = strings.NewReader("y\n")
	aout.Reset()
	if err := Apply(ctx, ac, d, ApplyOptions{}); err != nil {
		t.Fatalf("apply: %v\n%s", err, aout)
	}
	for _, want := range []string{"generate:\n", "n5    created", "n2    reissued"} {
		if !strings.Contains(aout.String(), want) {
			t.Errorf("apply output lacks %q:\n%s", want, aout)
		}
	}
	if pending(t, c, d) {
		t.Error("plan after apply still has changes")
	}
	if got := stateSnapshot(t, c.State); got == before {
		t.Error("apply did not generate")
	}
}

// TestPlanPreviewsFirstBootstrap: with no state directory at all, plan
// shows the whole bootstrap and creates nothing.
func TestPlanPreviewsFirstBootstrap(t *testing.T) {
	c, d, _ := sandboxClusterWith(t)
	if err := os.RemoveAll(c.State); err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	c.Stdout = out
	if err := Plan(context.Background(), c, d, PlanOptions{}); err != nil {
		t.Fatalf("plan with no state: %v\n%s", err, out)
	}
	for _, want := range []string{"CA          create", "gossip key  create", "5 node certificates: 5 to create"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	if fileExists(c.State) {
		t.Error("plan created the state directory")
	}
	// apply --yes bootstraps from nothing.
	if err := Apply(context.Background(), c, d, ApplyOptions{Yes: true}); err != nil {
		t.Fatalf("apply --yes with no state: %v", err)
	}
	if pending(t, c, d) {
		t.Error("plan after apply still has changes")
	}
}
