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

func TestAdminKilledDuringCommitConverges(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true}, nodeSpec{name: "b"}, nodeSpec{name: "c"})
	old := f.bundles("")
	if _, err := f.apply(t, old, f.opts()); err != nil {
		t.Fatal(err)
	}
	nb := f.bundles("-new")
	o := f.opts()
	o.Concurrency = 1
	commits := 0
	o.hooks = &testHooks{afterCommit: func(node string) error {
		commits++
		if commits == 1 {
			return errKilled
		}
		return nil
	}}
	if _, err := f.apply(t, nb, o); !errors.Is(err, errKilled) {
		t.Fatalf("err = %v, want the simulated crash", err)
	}
	j, err := loadJournal(f.journal)
	if err != nil || j == nil || j.Phase != phaseCommitting {
		t.Fatalf("journal after crash: %+v %v", j, err)
	}
	committed := 0
	for i, n := range f.topo.Nodes {
		if f.readNode(n.Name, "/etc/consul.d/consul.json") == string(nb[i].Files[0].Content) {
			committed++
		}
	}
	if committed != 1 {
		t.Fatalf("%d nodes committed before the crash, want 1", committed)
	}

	// A new bundle set meanwhile must not confuse the recovery: the rerun
	// first finishes the interrupted generation, then applies the new one.
	res, err := f.apply(t, nb, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Recovered, "finished") {
		t.Errorf("Recovered = %q", res.Recovered)
	}
	if res.Changed {
		t.Error("rerun found changes after finishing the interrupted apply")
	}
	for i, n := range f.topo.Nodes {
		for _, file := range nb[i].Files {
			if f.readNode(n.Name, file.Path) != string(file.Content) {
				t.Errorf("%s:%s not converged", n.Name, file.Path)
			}
		}
		if left := f.stagingLeft(n.Name); left != nil {
			t.Errorf("%s: left behind %v", n.Name, left)
		}
		if calls := systemctlCalls(f.servers[n.Name]); len(calls) != 2 {
			t.Errorf("%s: calls %q, want two reloads", n.Name, calls)
		}
		// The replaced files were backed up under the previous generation.
		bk := filepath.Join("/var/lib/mtlsctl/backup", old[i].Generation, "/etc/consul.d/consul.json")
		if f.readNode(n.Name, bk) != string(old[i].Files[0].Content) {
			t.Errorf("%s: no backup at %s", n.Name, bk)
		}
	}
	if j, _ := loadJournal(f.journal); j != nil {
		t.Error("journal left after recovery")
	}
}

func TestAdminKilledDuringStagingRollsBack(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"}, nodeSpec{name: "b"})
	old := f.bundles("")
	if _, err := f.apply(t, old, f.opts()); err != nil {
		t.Fatal(err)
	}
	// Simulate the kill: cancel the apply's context once one node staged.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := f.opts()
	o.Concurrency = 1
	o.hooks = &testHooks{afterStage: func(string) { cancel() }}
	if _, err := Apply(ctx, f.topo, f.bundles("-new"), o); err == nil {
		t.Fatal("apply survived its cancellation")
	}
	if j, _ := loadJournal(f.journal); j == nil {
		t.Fatal("no journal after an interrupted staging")
	}
	res, err := f.apply(t, old, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Recovered, "rolled back") || res.Changed {
		t.Errorf("Recovered = %q, Changed = %v", res.Recovered, res.Changed)
	}
	for i, n := range f.topo.Nodes {
		if f.readNode(n.Name, "/etc/consul.d/consul.json") != string(old[i].Files[0].Content) {
			t.Errorf("%s changed", n.Name)
		}
		if left := f.stagingLeft(n.Name); left != nil {
			t.Errorf("%s: left behind %v", n.Name, left)
		}
	}
}

func TestConcurrentAppliesLocked(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"}, nodeSpec{name: "b"})
	b := f.bundles("")
	staged := make(chan struct{})
	release := make(chan struct{})
	o1 := f.opts()
	o1.hooks = &testHooks{afterStage: func(node string) {
		if node == "a" {
			close(staged)
			<-release
		}
	}}
	done := make(chan error)
	go func() {
		_, err := f.apply(t, b, o1)
		done <- err
	}()
	select {
	case <-staged:
	case <-time.After(30 * time.Second):
		t.Fatal("first apply never staged")
	}
	o2 := f.opts()
	o2.JournalDir = filepath.Join(t.TempDir(), "other-admin")
	_, err := f.apply(t, b, o2)
	close(release)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second apply: err = %v, want ErrLocked", err)
	}
	if host, _ := os.Hostname(); !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "pid") {
		t.Errorf("lock error does not name the holder: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("first apply: %v", err)
	}
	for i, n := range f.topo.Nodes {
		if f.readNode(n.Name, "/etc/consul.d/consul.json") != string(b[i].Files[0].Content) {
			t.Errorf("%s: first apply did not land", n.Name)
		}
		if left := f.stagingLeft(n.Name); left != nil {
			t.Errorf("%s: left behind %v", n.Name, left)
		}
	}

}

func TestStaleLockReportedNotTaken(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a"})
	plantLock(t, f, "a", "deadbeef", "run=deadbeef holder=alice@old-admin pid=42 time=2020-01-01T00:00:00Z op=apply\n")
	b := f.bundles("")
	_, err := f.apply(t, b, f.opts())
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "alice@old-admin pid 42") || !strings.Contains(err.Error(), "--force-unlock=deadbeef") {
		t.Fatalf("err = %v, want a lock report naming alice and the run to confirm", err)
	}
	if f.readNode("a", "/etc/consul.d/consul.json") != "" {
		t.Fatal("applied despite the lock")
	}
	o := f.opts()
	o.ForceUnlock = Unlock{Gone: true, Run: "deadbeef"}
	if _, err := f.apply(t, b, o); err != nil {
		t.Fatalf("with --force-unlock=deadbeef: %v", err)
	}
	if f.stagingLeft("a") != nil {
		t.Errorf("left behind %v", f.stagingLeft("a"))
	}
}
