package distribute

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
	"github.com/mtlsctl/mtlsctl/inventory"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// fixture is a sandbox cluster: one in-process SSH server per node, a
// temporary HOME with the client key and a known_hosts listing every server.
type fixture struct {
	t       testing.TB
	home    string
	key     ssh.Signer
	servers map[string]*sshsandbox.Server
	topo    *inventory.Topology
	journal string
	gossip  string
	caPEM   []byte
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeIdentity writes an OpenSSH private key file for a new key.
func writeIdentity(t testing.TB, file string, passphrase []byte) ssh.Signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var blk *pem.Block
	var err error
	if passphrase != nil {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", passphrase)
	} else {
		blk, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(file), 0o700)
	if err := os.WriteFile(file, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := ssh.NewSignerFromKey(priv)
	return s
}

type nodeSpec struct {
	name   string
	server bool
	fault  sshsandbox.Fault
	opts   sshsandbox.Options // AuthorizedKeys is filled in
	noKH   bool               // leave out of known_hosts
}

func newFixture(t testing.TB, specs ...nodeSpec) *fixture {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SSH_AUTH_SOCK", "")
	f := &fixture{t: t, home: home, servers: map[string]*sshsandbox.Server{}, journal: filepath.Join(t.TempDir(), "journal"),
		gossip: "c2VjcmV0LWdvc3NpcC1rZXktMzItYnl0ZXMtbG9uZyE="}
	f.key = writeIdentity(t, filepath.Join(home, ".ssh", "id_ed25519"), nil)
	f.topo = &inventory.Topology{Cluster: &inventory.Cluster{
		Name: "test",
		Consul: inventory.Consul{ConfigDir: "/etc/consul.d", TLSDir: "/etc/consul.d/tls",
			ReloadCommand: "systemctl reload consul", RestartCommand: "systemctl restart consul"},
		SSH:          inventory.SSH{User: "root", Port: 22, IdentityFile: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts"},
		NodeStateDir: "/var/lib/mtlsctl",
		Datacenters:  []inventory.Datacenter{{Name: "dc1"}},
	}}
	var kh strings.Builder
	for _, sp := range specs {
		o := sp.opts
		o.AuthorizedKeys = append(o.AuthorizedKeys, f.key.PublicKey())
		o.Dir = t.TempDir()
		o.Fault = sp.fault
		srv, err := sshsandbox.Start(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		f.servers[sp.name] = srv
		n := &inventory.Node{Name: sp.name, Address: "127.0.0.1", SSHPort: srv.Port(), Datacenter: "dc1"}
		if sp.server {
			n.Components = []inventory.Component{inventory.ZooKeeper}
		}
		f.topo.Nodes = append(f.topo.Nodes, n)
		f.topo.Cluster.Datacenters[0].Nodes = append(f.topo.Cluster.Datacenters[0].Nodes, n)
		if !sp.noKH {
			if _, isCert := srv.HostKey().(*ssh.Certificate); !isCert {
				kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey()) + "\n")
			}
		}
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), []byte(kh.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.caPEM = selfSigned(t, "Consul Agent CA", time.Now().Add(5*365*24*time.Hour))
	return f
}

func (f *fixture) opts() Options {
	return Options{Options: transport.Options{HomeDir: f.home, KnownHostsFiles: []string{}, ConnectTimeout: 5 * time.Second, StepTimeout: 20 * time.Second}, JournalDir: f.journal}
}

func selfSigned(t testing.TB, cn string, notAfter time.Time) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// bundles builds one bundle per node; variant changes the config content.
func (f *fixture) bundles(variant string) []consulcfg.Bundle {
	var out []consulcfg.Bundle
	for _, n := range f.topo.Nodes {
		cfg := fmt.Sprintf("{\n  \"node_name\": %q,\n  \"datacenter\": \"dc1\",\n  \"encrypt\": %q,\n  \"log_level\": %q\n}\n", n.Name, f.gossip, "INFO"+variant)
		b := consulcfg.Bundle{Node: n.Name, Datacenter: "dc1", Server: n.IsServer(), Files: []consulcfg.File{
			consulcfg.NewFile("/etc/consul.d/consul.json", []byte(cfg), 0o640, consulcfg.KindConfig),
			consulcfg.NewFile("/etc/consul.d/services.json", []byte(`{"services": []}`+"\n"), 0o644, consulcfg.KindService),
			consulcfg.NewFile("/etc/consul.d/tls/ca.pem", f.caPEM, 0o644, consulcfg.KindCACert),
			consulcfg.NewFile("/etc/consul.d/tls/agent.pem", selfSigned(f.t, n.Name+".dc1.consul", time.Now().Add(365*24*time.Hour)), 0o644, consulcfg.KindCert),
			consulcfg.NewFile("/etc/consul.d/tls/agent-key.pem", []byte("-----BEGIN EC PRIVATE KEY-----\nnot-a-real-key-"+n.Name+variant+"\n-----END EC PRIVATE KEY-----\n"), 0o600, consulcfg.KindKey),
		}}
		b.Seal()
		out = append(out, b)
	}
	return out
}

// readNode reads a node file from its sandbox root ("" if missing).
func (f *fixture) readNode(node, p string) string {
	b, err := os.ReadFile(f.servers[node].Path(p))
	if err != nil {
		return ""
	}
	return string(b)
}

// stagingLeft lists leftover staging/upload dirs and locks on a node.
func (f *fixture) stagingLeft(node string) []string {
	var left []string
	root := f.servers[node].Root()
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		base := filepath.Base(p)
		if strings.HasPrefix(base, stagePrefix) || strings.HasPrefix(base, uploadPrefix) || (base == lockDir && fi.IsDir()) {
			left = append(left, strings.TrimPrefix(p, root))
		}
		return nil
	})
	return left
}

func (f *fixture) apply(t *testing.T, b []consulcfg.Bundle, o Options) (*ApplyResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return Apply(ctx, f.topo, b, o)
}

func (f *fixture) plan(t *testing.T, b []consulcfg.Bundle, o Options) (*PlanResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Plan(ctx, f.topo, b, o)
}
