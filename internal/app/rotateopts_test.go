package app

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// TestRotateCertsLeafOptions: the leaves rotate certs reissues take
// --cert-days and --key-type, else the cluster file's certs.days (365 when
// it has none) and ecdsa-p256, as generate's do.
func TestRotateCertsLeafOptions(t *testing.T) {
	inv := filepath.Join("..", "..", "examples", "edge-5.yaml")
	state := filepath.Join(t.TempDir(), "state")
	c := Common{Inventory: inv, State: state, Stdout: io.Discard, Stderr: io.Discard}
	if err := Generate(c, GenerateOptions{RenewBefore: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	topo, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	st, err := ca.Open(state, ca.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		r       RotateOptions
		days    int
		rsaBits int // 0: ECDSA P-256
	}{
		{"flags given", RotateOptions{CertDays: 45, KeyType: ca.KeyRSA2048}, 45, 2048},
		{"defaults", RotateOptions{}, 365, 0},
		{"days only", RotateOptions{CertDays: 10}, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen := tc.r.leafOptions(topo)
			gen.ReissueAll = true
			start := time.Now()
			rep, err := st.Generate(topo, gen)
			if err != nil {
				t.Fatal(err)
			}
			creds, err := st.Credentials(topo)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range rep.Nodes {
				if n.Action != ca.Reissued {
					t.Errorf("%s: %s, want reissued", n.Node, n.Action)
				}
				cert := creds.Leaves[n.Node].Cert
				want := start.Add(time.Duration(tc.days) * 24 * time.Hour)
				if d := cert.NotAfter.Sub(want); d < -time.Hour || d > time.Hour {
					t.Errorf("%s: expires %s, want about %s (%d days)", n.Node, cert.NotAfter, want, tc.days)
				}
				switch k := cert.PublicKey.(type) {
				case *rsa.PublicKey:
					if k.N.BitLen() != tc.rsaBits {
						t.Errorf("%s: RSA %d bits, want %d", n.Node, k.N.BitLen(), tc.rsaBits)
					}
				case *ecdsa.PublicKey:
					if tc.rsaBits != 0 || k.Curve.Params().BitSize != 256 {
						t.Errorf("%s: ECDSA P-%d, want RSA %d", n.Node, k.Curve.Params().BitSize, tc.rsaBits)
					}
				default:
					t.Errorf("%s: key %T", n.Node, k)
				}
			}
		})
	}
}
