package transport

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
	"github.com/mtlsctl/mtlsctl/inventory"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestQuote(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	cases := []struct{ name, in string }{
		{"empty", ""},
		{"plain", "/etc/consul.d/agent.json"},
		{"spaces", "a b  c"},
		{"single quotes", "it's 'quoted'"},
		{"only a quote", "'"},
		{"dollar and backticks", "$HOME `id` $(id) ${x:-y}"},
		{"backslashes", `a\b\\c\'`},
		{"double quotes", `"x" "`},
		{"glob and semicolons", "*; rm -rf / #"},
		{"newline and tab", "a\nb\tc"},
		{"utf-8", "nœud-é"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command("sh", "-c", "printf '%s' "+Quote(tc.in)).Output()
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.in {
				t.Fatalf("sh read %q back as %q (quoted %s)", tc.in, out, Quote(tc.in))
			}
		})
	}
}

func TestDriverParses(t *testing.T) {
	for _, sh := range []string{"sh", "dash", "bash"} {
		if _, err := exec.LookPath(sh); err != nil {
			continue
		}
		if out, err := exec.Command(sh, "-n", "-c", driverScript).CombinedOutput(); err != nil {
			t.Errorf("%s -n driver.sh: %v\n%s", sh, err, out)
		}
	}
}

// sandboxPool starts one in-process SSH node and a pool that reaches it.
func sandboxPool(t *testing.T) (*Pool, *sshsandbox.Server, *inventory.Node) {
	t.Helper()
	home := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	if err := os.WriteFile(filepath.Join(home, ".ssh", "id_ed25519"), pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(priv)
	srv, err := sshsandbox.Start(sshsandbox.Options{AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	kh := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr())}, srv.HostKey()) + "\n"
	if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), []byte(kh), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &inventory.Node{Name: "n1", Address: "127.0.0.1", SSHPort: srv.Port(), Datacenter: "dc1"}
	topo := &inventory.Topology{Cluster: &inventory.Cluster{Name: "t",
		SSH:         inventory.SSH{User: "root", IdentityFile: "~/.ssh/id_ed25519", KnownHosts: "~/.ssh/known_hosts"},
		Datacenters: []inventory.Datacenter{{Name: "dc1", Nodes: []*inventory.Node{n}}}}, Nodes: []*inventory.Node{n}}
	p, err := New(topo, Options{HomeDir: home, StepTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, srv, n
}

// Every step of a command runs on one remote shell: one exec session, with
// each step's stdout, stderr and exit code framed apart.
func TestShellRunsManyStepsInOneSession(t *testing.T) {
	p, srv, n := sandboxPool(t)
	ctx := context.Background()
	c, err := p.Conn(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name, script, want string
		code               int
		stderr             string
	}{
		{name: "plain", script: "echo one\necho two\n", want: "one\ntwo\n"},
		{name: "no trailing newline", script: "printf 'x'", want: "x"},
		{name: "empty output", script: "true", want: ""},
		{name: "blank lines kept", script: "printf '\\n\\na\\n\\n'", want: "\n\na\n\n"},
		{name: "exit code and stderr", script: "echo out; echo 'bad thing' >&2; echo more >&2; exit 3", want: "out\n", code: 3, stderr: "bad thing\nmore\n"},
		{name: "stdin is empty", script: "if read -r x; then echo \"read $x\"; else echo eof; fi", want: "eof\n"},
		{name: "looks like a frame", script: "echo 'RC 0'; echo 'END'; echo '@mtlsctl- RC 1'", want: "RC 0\nEND\n@mtlsctl- RC 1\n"},
		{name: "root and umask", script: "printf '%s %s' \"${R-unset}\" \"$(umask)\"", want: srv.Root() + " 0077"},
		{name: "variables do not leak between steps", script: "X=1", want: ""},
		{name: "after", script: "echo \"${X-unset}\"", want: "unset\n"},
		{name: "a quoted line", script: "printf '%s' " + Quote("it's $HOME"), want: "it's $HOME"},
	}
	before := srv.Sessions()
	for _, st := range steps {
		out, err := c.Run(ctx, st.name, st.script)
		if out != st.want {
			t.Errorf("%s: stdout %q, want %q", st.name, out, st.want)
		}
		var se *ScriptError
		switch {
		case st.code == 0 && err != nil:
			t.Errorf("%s: %v", st.name, err)
		case st.code != 0 && (!errors.As(err, &se) || se.Code != st.code || se.Stderr != st.stderr):
			t.Errorf("%s: error %#v, want exit %d with stderr %q", st.name, err, st.code, st.stderr)
		}
	}
	got := srv.Sessions()
	if exec := got.Exec - before.Exec; exec != 1 {
		t.Errorf("%d exec sessions for %d steps, want 1", exec, len(steps))
	}
}

// A step that outlives the step deadline ends the connection with ErrTimeout.
func TestShellStepTimeout(t *testing.T) {
	p, _, n := sandboxPool(t)
	p.o.StepTimeout = 300 * time.Millisecond
	c, err := p.Conn(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Run(context.Background(), "slow", "sleep 5")
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "slow") {
		t.Errorf("error %q does not name the step", err)
	}
}
