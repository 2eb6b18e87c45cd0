package ca

import (
	"crypto"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

func TestGenerateFreshAndRerun(t *testing.T) {
	s := newState(t)
	topo := topology(2, 4)
	ports := &inventory.Assignment{Nodes: map[string]map[string][]int{"n1-1": {"zookeeper": {10001, 10002, 10003}}}}
	o := genOpts()
	o.Ports = ports
	rep, err := s.Generate(topo, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CA.Action != Created || rep.Gossip.Action != Created || rep.Ports != Created || len(rep.Nodes) != 8 || !rep.Changed() {
		t.Fatalf("report %+v", rep)
	}
	for _, n := range rep.Nodes {
		if n.Action != Created || n.Fingerprint == "" {
			t.Errorf("node %+v", n)
		}
	}
	// Modes: dirs 0700, keys and secrets 0600.
	filepath.WalkDir(s.Dir(), func(p string, d fs.DirEntry, err error) error {
		m := mode(t, p)
		switch {
		case d.IsDir() && m != 0o700:
			t.Errorf("%s: mode %04o, want 0700", p, m)
		case strings.HasSuffix(p, "key.pem") || strings.HasSuffix(p, gossipFile):
			if m != 0o600 {
				t.Errorf("%s: mode %04o, want 0600", p, m)
			}
		}
		return nil
	})

	before := treeHash(t, s.Dir())
	rep2, err := s.Generate(topo, o)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(before, treeHash(t, s.Dir())); len(d) > 0 {
		t.Errorf("re-run changed %v", d)
	}
	if rep2.Changed() || rep2.CA.Fingerprint != rep.CA.Fingerprint || rep2.Gossip.Fingerprint != rep.Gossip.Fingerprint || rep2.Ports != Kept {
		t.Errorf("re-run report %+v", rep2)
	}

	cr, err := s.Credentials(topo)
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Leaves) != 8 || cr.CAFingerprint != rep.CA.Fingerprint || GossipFingerprint(cr.GossipKey) != rep.Gossip.Fingerprint {
		t.Errorf("credentials %d leaves", len(cr.Leaves))
	}
	if got, _ := s.Ports(); got == nil || got.Ports("n1-1", "zookeeper")[2] != 10003 {
		t.Errorf("ports %+v", got)
	}
}

func TestGenerateChanges(t *testing.T) {
	tests := []struct {
		name       string
		change     func(topo *inventory.Topology, o *GenerateOptions, s *State)
		wantReason map[string]string // node -> reason substring; others kept
		wantAll    string            // every node reissued with this reason
		removed    []string
	}{
		{name: "address", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) { tp.Node("n1-2").Address = "10.9.9.9" },
			wantReason: map[string]string{"n1-2": "addresses changed: [10.1.0.2] → [10.9.9.9]"}},
		{name: "template address drops IP", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			tp.Node("n1-4").Address = `{{ GetPrivateInterfaces | attr "address" }}`
		}, wantReason: map[string]string{"n1-4": "addresses changed"}},
		{name: "role", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			tp.Node("n1-4").Components = []inventory.Component{inventory.ZooKeeper}
		}, wantReason: map[string]string{"n1-4": "role changed: client → server"}},
		{name: "datacenter", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) { tp.Node("n1-1").Datacenter = "dc-9" },
			wantReason: map[string]string{"n1-1": "datacenter changed"}},
		{name: "domain", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) { tp.Cluster.Consul.Domain = "edge" },
			wantAll: "domain changed"},
		{name: "expiring", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			o.Leaf.Now = func() time.Time { return t0.AddDate(0, 0, 340) }
		}, wantAll: "in 25 days"},
		{name: "expired", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			o.Leaf.Now = func() time.Time { return t0.AddDate(0, 0, 400) }
		}, wantAll: "expired on"},
		{name: "reissue all", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) { o.ReissueAll = true }, wantAll: "requested"},
		{name: "missing cert", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			os.Remove(filepath.Join(s.Dir(), "nodes", "n1-3", certFile))
		}, wantReason: map[string]string{"n1-3": "cert.pem missing"}},
		{name: "key from another write", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			k, _ := os.ReadFile(filepath.Join(s.Dir(), "nodes", "n1-1", keyFile))
			os.WriteFile(filepath.Join(s.Dir(), "nodes", "n1-2", keyFile), k, 0o600)
		}, wantReason: map[string]string{"n1-2": "does not match"}},
		{name: "new CA", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			if _, _, err := s.RotateCA(newCAOpts()); err != nil {
				panic(err)
			}
		}, wantAll: "issued by another CA"},
		{name: "node removed and added", change: func(tp *inventory.Topology, o *GenerateOptions, s *State) {
			tp.Nodes[3] = &inventory.Node{Name: "new", Address: "10.1.0.99", Datacenter: "dc-1"}
		}, wantReason: map[string]string{"new": "no certificate"}, removed: []string{"n1-4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, topo := generated(t, 1, 4)
			before := treeHash(t, s.Dir())
			o := genOpts()
			tc.change(topo, &o, s)
			rep, err := s.Generate(topo, o)
			if err != nil {
				t.Fatal(err)
			}
			if rep.CA.Action != Kept || rep.Gossip.Action != Kept {
				t.Errorf("CA %s gossip %s, want kept", rep.CA.Action, rep.Gossip.Action)
			}
			after := treeHash(t, s.Dir())
			for _, n := range rep.Nodes {
				want, ok := tc.wantReason[n.Node]
				if tc.wantAll != "" {
					want, ok = tc.wantAll, true
				}
				switch {
				case ok && (n.Action == Kept || !strings.Contains(n.Reason, want)):
					t.Errorf("%s: %s (%s), want reissue because %q", n.Node, n.Action, n.Reason, want)
				case !ok && n.Action != Kept:
					t.Errorf("%s: %s (%s), want kept", n.Node, n.Action, n.Reason)
				case !ok:
					for _, f := range []string{certFile, keyFile, specFile} {
						p := filepath.Join("nodes", n.Node, f)
						if before[p] != after[p] {
							t.Errorf("%s was rewritten", p)
						}
					}
				}
			}
			if strings.Join(rep.Removed, ",") != strings.Join(tc.removed, ",") {
				t.Errorf("removed %v, want %v", rep.Removed, tc.removed)
			}
			if _, err := s.Credentials(topo); err != nil {
				t.Errorf("credentials after generate: %v", err)
			}
			o.ReissueAll = false
			again := treeHash(t, s.Dir())
			if _, err := s.Generate(topo, o); err != nil {
				t.Fatal(err)
			}
			if d := diffTrees(again, treeHash(t, s.Dir())); len(d) > 0 {
				t.Errorf("third run changed %v", d)
			}
		})
	}
}

func TestGenerateAllOrNothing(t *testing.T) {
	failing := func(after int32) KeyGen {
		var n atomic.Int32
		return func(kt string) (crypto.Signer, error) {
			if n.Add(1) > after {
				return nil, errors.New("entropy exhausted")
			}
			return GenerateKey(kt)
		}
	}
	t.Run("fresh state stays empty", func(t *testing.T) {
		s := newState(t)
		o := genOpts()
		o.Leaf.KeyGen = failing(5)
		_, err := s.Generate(topology(1, 8), o)
		var ne *NodeError
		if err == nil || !errors.As(err, &ne) || !strings.Contains(err.Error(), "entropy exhausted") {
			t.Fatalf("error %v, want a NodeError", err)
		}
		if entries, _ := os.ReadDir(s.Dir()); len(entries) != 0 {
			t.Errorf("files written: %v", entries)
		}
	})
	t.Run("existing state unchanged", func(t *testing.T) {
		s, topo := generated(t, 1, 4)
		before := treeHash(t, s.Dir())
		o := genOpts()
		o.ReissueAll = true
		o.Leaf.KeyGen = failing(2)
		if _, err := s.Generate(topo, o); err == nil {
			t.Fatal("no error")
		}
		if d := diffTrees(before, treeHash(t, s.Dir())); len(d) > 0 {
			t.Errorf("failed run changed %v", d)
		}
	})
	t.Run("corrupt leaf is an error", func(t *testing.T) {
		s := newState(t)
		topo := topology(1, 4)
		s.Generate(topo, genOpts())
		p := filepath.Join(s.Dir(), "nodes", "n1-2", certFile)
		os.WriteFile(p, []byte("junk"), 0o644)
		before := treeHash(t, s.Dir())
		_, err := s.Generate(topo, genOpts())
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "n1-2") {
			t.Errorf("error %v, want ErrCorrupt naming %s", err, p)
		}
		if d := diffTrees(before, treeHash(t, s.Dir())); len(d) > 0 {
			t.Errorf("failed run changed %v", d)
		}
	})
	t.Run("duplicate node", func(t *testing.T) {
		topo := topology(1, 2)
		topo.Nodes = append(topo.Nodes, topo.Nodes[0])
		if _, err := newState(t).Generate(topo, genOpts()); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("error %v", err)
		}
	})
}

func TestCredentialsStale(t *testing.T) {
	s := newState(t)
	if _, err := s.Credentials(topology(1, 2)); !errors.Is(err, ErrNoCA) {
		t.Errorf("empty state: %v, want ErrNoCA", err)
	}
	topo := topology(1, 3)
	if _, err := s.Generate(topo, genOpts()); err != nil {
		t.Fatal(err)
	}
	topo.Nodes = append(topo.Nodes, &inventory.Node{Name: "late", Address: "10.1.0.50", Datacenter: "dc-1"})
	topo.Node("n1-1").Address = "10.7.7.7"
	_, err := s.Credentials(topo)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("error %v, want ErrStale", err)
	}
	for _, m := range []string{"node late: no certificate", "node n1-1: addresses changed"} {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func TestRotateCAAndBundle(t *testing.T) {
	s := newState(t)
	topo := topology(1, 3)
	rep, err := s.Generate(topo, genOpts())
	if err != nil {
		t.Fatal(err)
	}
	old, cur, err := s.RotateCA(newCAOpts())
	if err != nil {
		t.Fatal(err)
	}
	if old.Fingerprint() != rep.CA.Fingerprint || cur.Fingerprint() == old.Fingerprint() {
		t.Error("rotate returned the wrong CAs")
	}
	// The old CA is still trusted: its leaves stay usable until reissued.
	if cr, err := s.Credentials(topo); err != nil {
		t.Errorf("leaves of the still-trusted old CA: %v", err)
	} else if cr.Leaves["n1-1"].Cert.CheckSignatureFrom(old.Cert) != nil {
		t.Error("credentials should hold the old CA's leaves until Generate reissues them")
	}
	if _, err := s.Generate(topo, genOpts()); err != nil {
		t.Fatal(err)
	}
	cr, err := s.Credentials(topo)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(cr.CABundlePEM), "BEGIN CERTIFICATE") != 2 || !strings.HasPrefix(string(cr.CABundlePEM), string(cur.CertPEM)) {
		t.Errorf("bundle should hold the new CA then the old one")
	}
	if err := s.RemoveTrustedCA(old.Fingerprint()[:8]); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.CABundle(); strings.Count(string(b), "BEGIN CERTIFICATE") != 1 {
		t.Error("old CA still trusted")
	}
	if err := s.RemoveTrustedCA("AB:CD"); err == nil {
		t.Error("removing an unknown CA: no error")
	}
	if matches, _ := filepath.Glob(filepath.Join(s.Dir(), "ca", "archive", "*", caKeyFile)); len(matches) != 1 || mode(t, matches[0]) != 0o600 {
		t.Errorf("archive %v", matches)
	}
}

func TestExpiry(t *testing.T) {
	s := newState(t)
	if _, err := s.Generate(topology(1, 2), genOpts()); err != nil {
		t.Fatal(err)
	}
	now := t0.AddDate(0, 0, 100)
	st, err := s.Expiry(nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[0].Name != "ca" || !st[0].IsCA || st[1].Name != "n1-1" {
		t.Fatalf("statuses %+v", st)
	}
	if st[0].DaysLeft != 1725 || st[1].DaysLeft != 265 || st[1].Expired {
		t.Errorf("days left CA %d leaf %d", st[0].DaysLeft, st[1].DaysLeft)
	}
	if !strings.Contains(st[1].Subject, "server.dc-1.consul") || len(st[1].Serial) != 32 || len(st[1].Fingerprint) != 95 {
		t.Errorf("leaf status %+v", st[1])
	}
	data, _ := os.ReadFile(filepath.Join(s.Dir(), "nodes", "n1-1", certFile))
	cs, err := ParseCertStatus(data, t0.AddDate(1, 0, 1))
	if err != nil || !cs.Expired || cs.DaysLeft >= 0 || cs.Fingerprint != st[1].Fingerprint {
		t.Errorf("ParseCertStatus %+v %v", cs, err)
	}
	if _, err := ParseCertStatus([]byte("nope"), now); err == nil {
		t.Error("garbage: no error")
	}
}

func TestPorts(t *testing.T) {
	s := newState(t)
	if a, err := s.Ports(); a != nil || err != nil {
		t.Errorf("none: %v %v", a, err)
	}
	a := &inventory.Assignment{Nodes: map[string]map[string][]int{"n1": {"egress": {10700}}}}
	if err := s.SavePorts(a); err != nil {
		t.Fatal(err)
	}
	before := treeHash(t, s.Dir())
	if err := s.SavePorts(a); err != nil {
		t.Fatal(err)
	}
	if d := diffTrees(before, treeHash(t, s.Dir())); len(d) > 0 {
		t.Errorf("same ports rewritten: %v", d)
	}
	a.Nodes["n2"] = map[string][]int{"egress": {10701}}
	s.SavePorts(a)
	if got, _ := s.Ports(); got.Ports("n2", "egress")[0] != 10701 {
		t.Error("update lost")
	}
	os.WriteFile(filepath.Join(s.Dir(), portsFile), []byte("{"), 0o644)
	if _, err := s.Ports(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt: %v", err)
	}
}
