package ca

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// t0 is the fixed clock of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

// rsaKeys caches RSA keys: generating them costs ~50 ms each.
var rsaKeys sync.Map

// testKeyGen is GenerateKey with RSA keys reused per type (ECDSA keys are
// cheap and stay fresh).
func testKeyGen(keyType string) (crypto.Signer, error) { return cachedRSA("leaf", keyType) }

// caKeyGen is testKeyGen with RSA keys distinct from the leaves'.
func caKeyGen(keyType string) (crypto.Signer, error) { return cachedRSA("ca", keyType) }

func cachedRSA(role, keyType string) (crypto.Signer, error) {
	if !strings.HasPrefix(keyType, "rsa") {
		return GenerateKey(keyType)
	}
	if k, ok := rsaKeys.Load(role + keyType); ok {
		return k.(*rsa.PrivateKey), nil
	}
	k, err := GenerateKey(keyType)
	if err != nil {
		return nil, err
	}
	rsaKeys.Store(role+keyType, k)
	return k, nil
}

func newState(t testing.TB) *State {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state"), OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newCAOpts() CAOptions { return CAOptions{Now: fixedNow, KeyGen: caKeyGen} }

func mustCA(t testing.TB, s *State, o CAOptions) *CA {
	t.Helper()
	c, err := s.CreateCA(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// topology builds a Topology directly from the types: dcs datacenters of
// perDC nodes each, the first 3 of each a Consul server.
func topology(dcs, perDC int) *inventory.Topology {
	cl := &inventory.Cluster{Name: "test", Consul: inventory.Consul{Domain: "consul"}}
	t := &inventory.Topology{Cluster: cl}
	for d := range dcs {
		dc := inventory.Datacenter{Name: fmt.Sprintf("dc-%d", d+1)}
		for i := range perDC {
			comps := []inventory.Component{inventory.MessageProcessor}
			if i < 3 {
				comps = []inventory.Component{inventory.ZooKeeper, inventory.Cassandra}
			}
			n := &inventory.Node{
				Name:       fmt.Sprintf("n%d-%d", d+1, i+1),
				Address:    fmt.Sprintf("10.%d.%d.%d", d+1, i/250, i%250+1),
				Components: comps,
				Datacenter: dc.Name,
			}
			dc.Nodes = append(dc.Nodes, n)
			t.Nodes = append(t.Nodes, n)
		}
		cl.Datacenters = append(cl.Datacenters, dc)
	}
	return t
}

// generated returns a new state directory on which Generate has run for
// topology(dcs, perDC), and that topology.
func generated(t *testing.T, dcs, perDC int) (*State, *inventory.Topology) {
	t.Helper()
	s, topo := newState(t), topology(dcs, perDC)
	if _, err := s.Generate(topo, genOpts()); err != nil {
		t.Fatal(err)
	}
	return s, topo
}

func genOpts() GenerateOptions {
	return GenerateOptions{CA: newCAOpts(), Leaf: IssueOptions{Now: fixedNow, KeyGen: testKeyGen}}
}

// treeHash maps every path under dir to its mode, size, mtime and content
// hash, so that a comparison proves nothing was rewritten.
func treeHash(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		v := fmt.Sprintf("%v %d", fi.Mode(), fi.ModTime().UnixNano())
		if !d.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			v += " " + hex.EncodeToString(sum[:])
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if b[k] != v {
			d = append(d, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, k)
		}
	}
	sort.Strings(d)
	return d
}

// noSecret fails if s shows key material.
func noSecret(t *testing.T, s string, secrets ...string) {
	t.Helper()
	if strings.Contains(s, "PRIVATE KEY") {
		t.Errorf("message shows a private key: %q", s)
	}
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("message shows a secret")
		}
	}
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// checkErr fails unless err is non-nil, matches want (when want is not nil)
// and mentions every string of msgs.
func checkErr(t *testing.T, err, want error, msgs ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if want != nil && !errors.Is(err, want) {
		t.Errorf("error %v, want %v", err, want)
	}
	for _, m := range msgs {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}
