package sshsandbox

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

func newSigner(t *testing.T) ssh.Signer {
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

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Dir = t.TempDir()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(s *Server, user string, key ssh.Signer) (*ssh.Client, error) {
	return ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey()),
		Timeout:         5 * time.Second,
	})
}

func TestSFTPAndExecShareTheRoot(t *testing.T) {
	key := newSigner(t)
	s := start(t, Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	c, err := dial(s, "root", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.MkdirAll("/etc/consul.d"); err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("/etc/consul.d/a.json")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("{}\n"))
	f.Close()
	if b, err := os.ReadFile(s.Path("/etc/consul.d/a.json")); err != nil || string(b) != "{}\n" {
		t.Fatalf("file under root: %q %v", b, err)
	}
	if wd, err := sc.Getwd(); err != nil || wd != "/root" {
		t.Errorf("Getwd = %q, %v; want /root", wd, err)
	}

	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sess.Stdout = &out
	sess.Stdin = strings.NewReader(`cat "$MTLSCTL_ROOT/etc/consul.d/a.json"; systemctl reload consul`)
	if err := sess.Run("sudo -n sh -s"); err != nil {
		t.Fatal(err)
	}
	if out.String() != "{}\n" {
		t.Errorf("script output %q", out.String())
	}
	if calls := s.Calls(); len(calls) != 1 || calls[0] != "systemctl reload consul" {
		t.Errorf("Calls = %q", calls)
	}

	sess, _ = c.NewSession()
	err = sess.Run("exit 7")
	if ee, ok := err.(*ssh.ExitError); !ok || ee.ExitStatus() != 7 {
		t.Errorf("exit status: %v", err)
	}
	if got, want := s.Sessions(), (Sessions{Exec: 2, SFTP: 1}); got != want {
		t.Errorf("Sessions = %+v, want %+v", got, want)
	}
}

func TestFaults(t *testing.T) {
	key := newSigner(t)
	tests := []struct {
		name  string
		fault Fault
		check func(t *testing.T, s *Server)
	}{
		{"deny auth", Fault{DenyAuth: true}, func(t *testing.T, s *Server) {
			if _, err := dial(s, "root", key); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
				t.Errorf("err = %v", err)
			}
		}},
		{"drop connections", Fault{DropConnections: true}, func(t *testing.T, s *Server) {
			if _, err := dial(s, "root", key); err == nil {
				t.Error("dial succeeded")
			}
		}},
		{"disk full", Fault{DiskFullAfter: 4}, func(t *testing.T, s *Server) {
			c, err := dial(s, "root", key)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc, _ := sftp.NewClient(c)
			f, err := sc.Create("/big")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("0123456789")); err == nil {
				t.Error("write past quota succeeded")
			}
		}},
		{"drop on write", Fault{DropOnWrite: true}, func(t *testing.T, s *Server) {
			c, err := dial(s, "root", key)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc, _ := sftp.NewClient(c)
			f, err := sc.Create("/x")
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("x"))
			if err := c.Wait(); err == nil {
				t.Log("connection closed cleanly")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Fault: tt.fault})
			tt.check(t, s)
		})
	}
}

func TestHostCertificate(t *testing.T) {
	key, ca := newSigner(t), newSigner(t)
	s := start(t, Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, HostCertAuthority: ca})
	cert, ok := s.HostKey().(*ssh.Certificate)
	if !ok {
		t.Fatalf("HostKey is %T, want a certificate", s.HostKey())
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return bytes.Equal(k.Marshal(), ca.PublicKey().Marshal())
	}}
	c, err := ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: checker.CheckHostKey, HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if cert.CertType != ssh.HostCert {
		t.Error("not a host certificate")
	}
}

func TestCloseIsClean(t *testing.T) {
	key := newSigner(t)
	s, err := Start(Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(s, "admin", key)
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := c.NewSession()
	sess.Start("sleep 30")
	dir := s.dir
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary dir left behind: %v", err)
	}
	c.Close()
}

// A server asked for a port listens on it again after a restart, and a
// taken port is refused rather than silently replaced.
func TestFixedPort(t *testing.T) {
	key := newSigner(t)
	first := start(t, Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, HostKey: newSigner(t)})
	port := first.Port()
	if _, err := Start(Options{Dir: t.TempDir(), Port: port}); err == nil {
		t.Fatalf("a second server on taken port %d started", port)
	}
	first.Close()
	again := start(t, Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, Port: port})
	if again.Port() != port {
		t.Fatalf("port %d, want %d", again.Port(), port)
	}
	c, err := dial(again, "root", key)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// The ss stand-in answers a proxy restart's port queries as a node whose
// proxy runs: nothing established, the port listening.
func TestSSStandIn(t *testing.T) {
	key := newSigner(t)
	s := start(t, Options{AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}})
	c, err := dial(s, "root", key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for cmd, want := range map[string]string{
		`ss -tn state established "sport = :10700" | tail -n +2 | wc -l`:                 "0",
		`[ "$(ss -ltn "sport = :10700" | tail -n +2 | wc -l)" -ge 8 ] && echo listening`: "listening",
	} {
		sess, err := c.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := sess.CombinedOutput(cmd)
		sess.Close()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%s: %q, %v; want %q", cmd, out, err, want)
		}
	}
	if calls := strings.Join(s.Calls(), "\n"); !strings.Contains(calls, "ss -ltn sport = :10700") {
		t.Errorf("calls not recorded: %s", calls)
	}
}
