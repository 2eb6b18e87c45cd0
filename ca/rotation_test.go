package ca

import (
	"errors"
	"strings"
	"testing"
)

func TestKeyringPending(t *testing.T) {
	k1, _ := NewGossipKey(nil)
	k2, _ := NewGossipKey(nil)
	for _, tc := range []struct {
		name    string
		kr      Keyring
		wantErr string
	}{
		{"no pending", Keyring{Primary: k1}, ""},
		{"pending", Keyring{Primary: k1, Pending: k2}, ""},
		{"pending is primary", Keyring{Primary: k1, Pending: k1}, "already the primary"},
		{"pending invalid", Keyring{Primary: k1, Pending: "bm90IGEga2V5"}, "pending key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			err := s.SetKeyring(&tc.kr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				noSecret(t, err.Error(), k1, k2)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Keyring()
			if err != nil {
				t.Fatal(err)
			}
			if got.Primary != tc.kr.Primary || got.Pending != tc.kr.Pending {
				t.Error("keyring did not round-trip")
			}
			if mode(t, s.path(gossipFile)) != 0o600 {
				t.Error("gossip.json is not 0600")
			}
		})
	}
}

func TestGenerateReissueNodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reissue  []string
		want     []string // reissued nodes
		wantNode string   // a NodeError for this node
	}{
		{"none", nil, nil, ""},
		{"one", []string{"n1-2"}, []string{"n1-2"}, ""},
		{"two", []string{"n1-1", "n1-3"}, []string{"n1-1", "n1-3"}, ""},
		{"unknown", []string{"n9-9"}, nil, "n9-9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, topo := generated(t, 1, 3)
			before, err := s.Credentials(topo)
			if err != nil {
				t.Fatal(err)
			}
			o := genOpts()
			o.Reissue = tc.reissue
			rep, err := s.Generate(topo, o)
			if tc.wantNode != "" {
				var ne *NodeError
				if !errors.As(err, &ne) || ne.Node != tc.wantNode {
					t.Fatalf("error %v, want a NodeError for %s", err, tc.wantNode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			after, err := s.Credentials(topo)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range rep.Nodes {
				changed := before.Leaves[n.Node].Fingerprint() != after.Leaves[n.Node].Fingerprint()
				if (n.Action == Reissued) != changed {
					t.Errorf("node %s: action %s but changed=%v", n.Node, n.Action, changed)
				}
				if n.Action == Reissued {
					got = append(got, n.Node)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("reissued %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCredentialsDuringRollover follows the three phases of `rotate ca`:
// the old CA's leaves stay usable while it is trusted, and become stale once
// it is dropped before they are reissued.
func TestCredentialsDuringRollover(t *testing.T) {
	s, topo := generated(t, 1, 3)
	old, cur, err := s.RotateCA(newCAOpts())
	if err != nil {
		t.Fatal(err)
	}
	cr, err := s.Credentials(topo)
	if err != nil {
		t.Fatalf("phase 1 (old+new trusted, old leaves): %v", err)
	}
	if cr.CAFingerprint != cur.Fingerprint() || strings.Count(string(cr.CABundlePEM), "BEGIN CERTIFICATE") != 2 {
		t.Error("phase 1: bundle should hold both CAs, current first")
	}
	// Dropping the old CA before reissuing makes its leaves stale.
	s2, topo2 := generated(t, 1, 3)
	old2, _, err := s2.RotateCA(newCAOpts())
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.RemoveTrustedCA(old2.Fingerprint()); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Credentials(topo2); !errors.Is(err, ErrStale) {
		t.Errorf("old leaves after dropping the old CA: %v, want ErrStale", err)
	}
	// Phase 2: reissue; phase 3: drop.
	if _, err := s.Generate(topo, genOpts()); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTrustedCA(old.Fingerprint()); err != nil {
		t.Fatal(err)
	}
	cr, err = s.Credentials(topo)
	if err != nil {
		t.Fatalf("phase 3: %v", err)
	}
	for n, l := range cr.Leaves {
		if l.Cert.CheckSignatureFrom(cur.Cert) != nil {
			t.Errorf("node %s: leaf not signed by the new CA", n)
		}
	}
	if strings.Count(string(cr.CABundlePEM), "BEGIN CERTIFICATE") != 1 {
		t.Error("phase 3: bundle should hold only the new CA")
	}
}
