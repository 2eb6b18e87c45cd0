package distribute

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestHostKeyChecks(t *testing.T) {
	ca := newSigner(t)
	tests := []struct {
		name    string
		spec    nodeSpec
		kh      func(f *fixture) string // known_hosts content; nil: the fixture's
		accept  bool
		wantErr error
		check   func(t *testing.T, f *fixture)
	}{
		{name: "known key", spec: nodeSpec{name: "n"}},
		{name: "changed key refused even with accept-new", spec: nodeSpec{name: "n"}, accept: true, wantErr: ErrHostKeyMismatch,
			kh: func(f *fixture) string {
				return knownhosts.Line([]string{knownhosts.Normalize(f.servers["n"].Addr())}, newSigner(t).PublicKey()) + "\n"
			},
			check: func(t *testing.T, f *fixture) {
				kh, _ := os.ReadFile(filepath.Join(f.home, ".ssh", "known_hosts"))
				if strings.Count(string(kh), "\n") != 1 {
					t.Error("known_hosts was modified on a mismatch")
				}
			}},
		{name: "unknown host refused", spec: nodeSpec{name: "n", noKH: true}, wantErr: ErrUnknownHost},
		{name: "unknown host accepted and recorded", spec: nodeSpec{name: "n", noKH: true}, accept: true,
			check: func(t *testing.T, f *fixture) {
				p := filepath.Join(f.home, ".ssh", "known_hosts")
				kh, _ := os.ReadFile(p)
				want := knownhosts.Line([]string{knownhosts.Normalize(f.servers["n"].Addr())}, f.servers["n"].HostKey())
				if !strings.Contains(string(kh), want) {
					t.Errorf("known_hosts = %q, want the new key", kh)
				}
				if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
					t.Errorf("known_hosts mode %v", fi.Mode().Perm())
				}
			}},
		{name: "hashed entry", spec: nodeSpec{name: "n", noKH: true}, kh: func(f *fixture) string {
			return knownhosts.HashHostname(knownhosts.Normalize(f.servers["n"].Addr())) + " " +
				string(ssh.MarshalAuthorizedKey(f.servers["n"].HostKey()))
		}},
		{name: "cert-authority host certificate", spec: nodeSpec{name: "n", opts: sshsandbox.Options{HostCertAuthority: ca}}, kh: func(f *fixture) string {
			return "@cert-authority " + knownhosts.Normalize(f.servers["n"].Addr()) + " " + string(ssh.MarshalAuthorizedKey(ca.PublicKey()))
		}},
		{name: "certificate from an unknown authority", spec: nodeSpec{name: "n", opts: sshsandbox.Options{HostCertAuthority: ca}}, accept: true,
			wantErr: ErrUnknownHost},
		{name: "revoked key", spec: nodeSpec{name: "n"}, wantErr: ErrHostKeyMismatch, kh: func(f *fixture) string {
			return "@revoked * " + string(ssh.MarshalAuthorizedKey(f.servers["n"].HostKey()))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.spec)
			if tt.kh != nil {
				os.WriteFile(filepath.Join(f.home, ".ssh", "known_hosts"), []byte(tt.kh(f)), 0o600)
			}
			o := f.opts()
			o.AcceptNewHostKeys = tt.accept
			_, err := f.plan(t, f.bundles(""), o)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("err = %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "SHA256:") {
				t.Errorf("error does not show the offered fingerprint: %v", err)
			}
			if tt.check != nil {
				tt.check(t, f)
			}
		})
	}
}

func TestMismatchNamesKnownLine(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "n"})
	p := filepath.Join(f.home, ".ssh", "known_hosts")
	other := newSigner(t).PublicKey()
	os.WriteFile(p, []byte("# comment\n"+knownhosts.Line([]string{knownhosts.Normalize(f.servers["n"].Addr())}, other)+"\n"), 0o600)
	_, err := f.plan(t, f.bundles(""), f.opts())
	if !errors.Is(err, ErrHostKeyMismatch) || !strings.Contains(err.Error(), p+":2") || !strings.Contains(err.Error(), ssh.FingerprintSHA256(f.servers["n"].HostKey())) {
		t.Fatalf("err = %v; want file:line of the known key and the offered fingerprint", err)
	}
}

func TestAuthFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fixture, o *Options)
	}{
		{"permission denied", func(f *fixture, o *Options) { f.servers["n"].SetFault(sshsandbox.Fault{DenyAuth: true}) }},
		{"wrong key", func(f *fixture, o *Options) {
			writeIdentity(t, filepath.Join(f.home, ".ssh", "id_ed25519"), nil)
		}},
		{"no key at all", func(f *fixture, o *Options) { os.Remove(filepath.Join(f.home, ".ssh", "id_ed25519")) }},
		{"wrong passphrase", func(f *fixture, o *Options) {
			writeIdentity(t, filepath.Join(f.home, ".ssh", "id_ed25519"), []byte("right"))
			o.Passphrase = func(string) ([]byte, error) { return []byte("wrong"), nil }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nodeSpec{name: "n"})
			o := f.opts()
			tt.setup(f, &o)
			_, err := f.plan(t, f.bundles(""), o)
			if !errors.Is(err, ErrAuth) {
				t.Fatalf("err = %v, want ErrAuth", err)
			}
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Error("error shows key material")
			}
		})
	}
}

func TestPassphrasePromptedOnce(t *testing.T) {
	idFile := filepath.Join(t.TempDir(), "enc")
	key := writeIdentity(t, idFile, []byte("s3cret"))
	f := newFixtureWithKey(t, key, idFile)
	var calls atomic.Int32
	o := f.opts()
	o.Passphrase = func(file string) ([]byte, error) { calls.Add(1); return []byte("s3cret"), nil }
	if _, err := f.plan(t, f.bundles(""), o); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Errorf("passphrase asked %d times, want 1", calls.Load())
	}
}

// newFixtureWithKey is a two-node fixture whose servers accept key, read
// from identity (HOME is fresh and holds no default key).
func newFixtureWithKey(t *testing.T, key ssh.Signer, identity string) *fixture {
	f := newFixture(t, nodeSpec{name: "a", opts: sshsandbox.Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}}},
		nodeSpec{name: "b", opts: sshsandbox.Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}}})
	os.Remove(filepath.Join(f.home, ".ssh", "id_ed25519"))
	f.topo.Cluster.SSH.IdentityFile = identity
	return f
}

func TestSSHConfigHonoured(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "n"})
	other := filepath.Join(f.home, ".ssh", "deploy_key")
	key := writeIdentity(t, other, nil)
	srv, err := sshsandbox.Start(sshsandbox.Options{Dir: t.TempDir(), AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f.servers["n"] = srv
	n := f.topo.Nodes[0]
	n.SSHHost, n.SSHPort, n.Address = "node-alias", 0, "10.255.0.1"
	f.topo.Cluster.SSH.Port = 0
	f.topo.Cluster.SSH.User = ""
	cfg := fmt.Sprintf("Host node-alias\n  HostName 127.0.0.1\n  Port %d\n  User deploy\n  IdentityFile ~/.ssh/deploy_key\n", srv.Port())
	os.WriteFile(filepath.Join(f.home, ".ssh", "config"), []byte(cfg), 0o600)
	os.WriteFile(filepath.Join(f.home, ".ssh", "known_hosts"),
		[]byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey())+"\n"), 0o600)
	p, err := f.plan(t, f.bundles(""), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if p.Nodes[0].Address != srv.Addr() {
		t.Errorf("address %s, want %s", p.Nodes[0].Address, srv.Addr())
	}
	if _, err := os.Stat(srv.Path("/home/deploy")); err != nil {
		t.Errorf("did not log in as deploy: %v", err)
	}
}

func TestBastionAndSudo(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "bastion"}, nodeSpec{name: "n1"}, nodeSpec{name: "n2"})
	bastion := f.servers["bastion"]
	f.topo.Nodes = f.topo.Nodes[1:]
	f.topo.Cluster.SSH.Bastion = "jump@" + bastion.Addr()
	f.topo.Cluster.SSH.User = "admin"
	f.topo.Cluster.SSH.Sudo = true
	var direct atomic.Int32
	o := f.opts()
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != bastion.Addr() {
			direct.Add(1)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	b := f.bundles("")
	if _, err := f.apply(t, b, o); err != nil {
		t.Fatal(err)
	}
	if direct.Load() != 0 {
		t.Errorf("%d direct connections to nodes behind the bastion", direct.Load())
	}
	if bastion.Accepts() != 1 {
		t.Errorf("bastion accepted %d connections, want 1 (shared)", bastion.Accepts())
	}
	for i, n := range f.topo.Nodes {
		for _, file := range b[i].Files {
			if f.readNode(n.Name, file.Path) != string(file.Content) {
				t.Errorf("%s:%s not written", n.Name, file.Path)
			}
		}
		if left := f.stagingLeft(n.Name); left != nil {
			t.Errorf("%s: left behind %v (upload dir not removed?)", n.Name, left)
		}
		if _, err := os.Stat(f.servers[n.Name].Path("/home/admin")); err != nil {
			t.Errorf("%s: not logged in as admin", n.Name)
		}
	}
}

func TestConcurrencyLimit(t *testing.T) {
	specs := make([]nodeSpec, 6)
	for i := range specs {
		specs[i] = nodeSpec{name: fmt.Sprintf("n%d", i)}
	}
	f := newFixture(t, specs...)
	var mu sync.Mutex
	cur, peak := 0, 0
	o := f.opts()
	o.Concurrency = 2
	o.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		cur--
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	if _, err := f.apply(t, f.bundles(""), o); err != nil {
		t.Fatal(err)
	}
	if peak != 2 {
		t.Errorf("peak concurrent dials %d, want 2", peak)
	}
	for name, srv := range f.servers {
		if srv.Accepts() != 1 {
			t.Errorf("%s: %d connections for one apply, want 1", name, srv.Accepts())
		}
	}
}

func TestConnectTimeout(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "n"})
	// A listener that accepts and never speaks: the handshake must time out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	f.topo.Nodes[0].SSHPort = ln.Addr().(*net.TCPAddr).Port
	o := f.opts()
	o.ConnectTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err = f.plan(t, f.bundles(""), o)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}
