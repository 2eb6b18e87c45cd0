package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/examples"
	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// sandboxCluster starts the demo's sandbox for edge-5 and returns the
// settings to run commands against it, with the state generated.
func sandboxCluster(t *testing.T) (Common, DistOptions) {
	t.Helper()
	c, d, _ := sandboxClusterWith(t)
	return c, d
}

// sandboxClusterWith is sandboxCluster that also returns the sandbox.
func sandboxClusterWith(t *testing.T) (Common, DistOptions, *sandbox) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	data, err := examples.FS.ReadFile("edge-5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := inventory.Parse("edge-5.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := startSandbox(topo, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.close)
	yml, err := inventory.Marshal(topo.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "cluster.yaml")
	if err := atomicfile.WriteFile(inv, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	c := Common{Inventory: inv, State: filepath.Join(dir, "state"), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	if err := Generate(c, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c, DistOptions{HomeDir: filepath.Join(dir, "home"), SkipLive: true}, sb
}

func pending(t *testing.T, c Common, d DistOptions) bool {
	t.Helper()
	err := Plan(context.Background(), c, d, PlanOptions{DetailedExit: true})
	switch err.(type) {
	case nil:
		return false
	case ChangesPending:
		return true
	}
	t.Fatalf("plan: %v", err)
	return false
}

func TestApplyConfirmation(t *testing.T) {
	c, d := sandboxCluster(t)
	ctx := context.Background()

	// Off a terminal, apply needs --yes and changes nothing without it.
	if err := Apply(ctx, c, d, ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("apply without --yes off a terminal: %v", err)
	}
	if !pending(t, c, d) {
		t.Fatal("apply without --yes changed the nodes")
	}

	// On a terminal, anything but yes cancels.
	for _, answer := range []string{"n\n", "\n", "maybe\n", ""} {
		ci := c
		ci.Interactive = true
		ci.Stdin = strings.NewReader(answer)
		out := &bytes.Buffer{}
		ci.Stdout = out
		if err := Apply(ctx, ci, d, ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "cancelled") {
			t.Fatalf("answer %q: %v", answer, err)
		}
		if !strings.Contains(out.String(), "[y/N]") || !strings.Contains(out.String(), "+ /etc/consul.d/tls/ca.pem") {
			t.Errorf("answer %q: the prompt should follow the plan:\n%s", answer, out)
		}
		if !pending(t, c, d) {
			t.Fatalf("answer %q changed the nodes", answer)
		}
	}

	// "yes" applies; afterwards there is nothing to confirm.
	ci := c
	ci.Interactive = true
	ci.Stdin = strings.NewReader("yes\n")
	if err := Apply(ctx, ci, d, ApplyOptions{}); err != nil {
		t.Fatalf("apply confirmed: %v", err)
	}
	if pending(t, c, d) {
		t.Fatal("changes still pending after a confirmed apply")
	}
	ci.Stdin = strings.NewReader("")
	out := &bytes.Buffer{}
	ci.Stdout = out
	if err := Apply(ctx, ci, d, ApplyOptions{}); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if strings.Contains(out.String(), "[y/N]") {
		t.Errorf("nothing to change, yet apply asked:\n%s", out)
	}
}

// With -o json, stdout holds exactly one JSON document, even when apply
// shows the plan and asks first.
func TestApplyJSONStdoutIsJSON(t *testing.T) {
	c, d := sandboxCluster(t)
	out := &bytes.Buffer{}
	c.Stdout, c.JSON, c.Interactive, c.Stdin = out, true, true, strings.NewReader("y\n")
	if err := Apply(context.Background(), c, d, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Changed bool `json:"changed"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || !res.Changed {
		t.Fatalf("stdout is not the apply's JSON (%v):\n%s", err, out)
	}
}

// plan -out FILE then apply FILE applies exactly that plan, without asking;
// the same file applied again is refused, because every node moved since.
func TestSavedPlanFile(t *testing.T) {
	c, d := sandboxCluster(t)
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := Plan(ctx, c, d, PlanOptions{Out: file}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Stdout.(*bytes.Buffer).String(), "saved the plan to "+file) {
		t.Errorf("plan -out does not say where the plan went:\n%s", c.Stdout)
	}
	if !pending(t, c, d) {
		t.Fatal("plan -out changed the nodes")
	}
	if err := Apply(ctx, c, d, ApplyOptions{PlanFile: file}); err != nil {
		t.Fatalf("apply FILE: %v", err)
	}
	if pending(t, c, d) {
		t.Fatal("apply FILE left changes pending")
	}
	err := Apply(ctx, c, d, ApplyOptions{PlanFile: file})
	if !errors.Is(err, distribute.ErrMoved) || !strings.Contains(err.Error(), "since the plan") {
		t.Fatalf("second apply of the same plan: %v, want ErrMoved", err)
	}
}
