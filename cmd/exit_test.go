package cmd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/examples"
	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// sandboxCluster starts one sandbox SSH server per node of edge-5 and
// writes a cluster file that reaches them with a throwaway key and
// known_hosts; HOME is a temporary directory, so ~/.ssh is never read.
// It returns the cluster file and a generated state directory.
func sandboxCluster(t *testing.T) (inv, state string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("SSH_AUTH_SOCK", "")
	data, err := examples.FS.ReadFile("edge-5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := inventory.Parse("edge-5.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	var known strings.Builder
	for _, n := range topo.Nodes {
		srv, err := sshsandbox.Start(sshsandbox.Options{Dir: filepath.Join(dir, "nodes", n.Name), AuthorizedKeys: []ssh.PublicKey{sshPub}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		n.SSHHost, n.SSHPort, n.SSHUser = "127.0.0.1", srv.Port(), ""
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s", srv.Port(), ssh.MarshalAuthorizedKey(srv.HostKey()))
	}
	knownFile := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(knownFile, []byte(known.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	topo.Cluster.SSH.User, topo.Cluster.SSH.IdentityFile, topo.Cluster.SSH.KnownHosts = u.Username, keyFile, knownFile
	topo.Cluster.SSH.Bastion, topo.Cluster.SSH.Sudo = "", false
	topo.Cluster.Consul.User, topo.Cluster.Consul.Group = "", ""
	yml, err := inventory.Marshal(topo.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	inv = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(inv, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	state = filepath.Join(dir, "state")
	if code, _, errOut := run(t, "-i", inv, "--state", state, "generate"); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errOut)
	}
	return inv, state
}

// TestExitCodes runs the command line in-process and checks the exit codes
// the README promises: 0 success, 1 failure, 2 changes pending under plan
// --detailed-exitcode, 3 usage error; and that a failure ends with one hint
// saying what to do next when there is one.
func TestExitCodes(t *testing.T) {
	inv, state := sandboxCluster(t)
	noState := filepath.Join(t.TempDir(), "no-state")
	at := func(args ...string) []string { return append([]string{"-i", inv, "--state", state}, args...) }

	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   string // in stderr, when set
		hint     string // in the hint line, when set
		noStderr bool
	}{
		{name: "validate", args: at("inventory", "validate"), code: 0, noStderr: true},
		{name: "no command shows help", args: nil, code: 0},
		{name: "group without subcommand shows help", args: []string{"rotate"}, code: 0},
		{name: "plan, detailed exit code, changes pending", args: at("plan", "--detailed-exitcode", "--skip-live"), code: 2, noStderr: true},
		{name: "plan without detailed exit code", args: at("plan", "--skip-live"), code: 0},
		{name: "plan one node", args: at("plan", "--detailed-exitcode", "--nodes", "n1"), code: 2},

		{name: "missing cluster file", args: []string{"-i", filepath.Join(t.TempDir(), "nope.yaml"), "inventory", "validate"}, code: 1, stderr: "nope.yaml"},
		{name: "no state directory", args: []string{"-i", inv, "--state", noState, "status"}, code: 1, stderr: "state directory does not exist", hint: "run `mtlsctl generate`"},
		{name: "apply off a terminal without --yes", args: at("apply"), code: 1, stderr: "pass --yes"},

		{name: "unknown command", args: []string{"nope"}, code: 3, stderr: `unknown command "nope"`, hint: "mtlsctl --help"},
		{name: "unknown subcommand", args: []string{"rotate", "nope"}, code: 3, stderr: `unknown command "nope"`, hint: "mtlsctl rotate --help"},
		{name: "unknown flag", args: at("plan", "--nope"), code: 3, stderr: "nope", hint: "mtlsctl plan --help"},
		{name: "unknown global flag", args: []string{"--nope", "plan"}, code: 3, stderr: "nope"},
		{name: "bad flag value", args: at("plan", "--timeout", "soon"), code: 3, stderr: "soon"},
		{name: "bad global flag value", args: []string{"-o", "yaml", "plan"}, code: 3, stderr: "use text or json"},
		{name: "bad key type", args: at("generate", "--key-type", "dsa"), code: 3, stderr: `--key-type: unknown key type "dsa"`},
		{name: "missing required flag", args: at("render"), code: 3, stderr: "--out DIR is required", hint: "mtlsctl render --help"},
		{name: "missing required argument", args: at("inventory", "import-apigee"), code: 3, stderr: "give the silent config file(s)"},
		{name: "stray argument", args: at("rotate", "ca", "extra"), code: 3, stderr: `rotate ca: unexpected argument "extra"`},
		{name: "unknown node", args: at("plan", "--nodes", "n1,n99"), code: 3, stderr: `"n99" is not a node`, hint: "inventory validate"},
		{name: "empty --nodes", args: at("plan", "--nodes", ","), code: 3, stderr: "--nodes names no node"},
		{name: "empty --nodes on a rotation", args: at("rotate", "certs", "--nodes="), code: 3, stderr: "--nodes names no node"},
		{name: "--nodes where not allowed", args: at("rotate", "gossip", "--nodes", "n1"), code: 3, stderr: "--nodes is not allowed"},
		{name: "unknown example", args: []string{"demo", "--example", "edge-0"}, code: 3, stderr: "no such example"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			if tc.noStderr && errOut != "" {
				t.Errorf("stderr should be empty:\n%s", errOut)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
			if tc.hint != "" && !strings.Contains(hintLine(errOut), tc.hint) {
				t.Errorf("hint lacks %q:\n%s", tc.hint, errOut)
			}
			if n := strings.Count(errOut, "hint:"); n > 1 {
				t.Errorf("%d hints, want at most one:\n%s", n, errOut)
			}
		})
	}
}

func hintLine(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "hint: ") {
			return l
		}
	}
	return ""
}

// TestHintsFromTypedErrors checks that the advice ca no longer spells out
// is added once by the command line, keyed by the error's type.
func TestHintsFromTypedErrors(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	inv := example("edge-5")
	state := filepath.Join(t.TempDir(), "state")
	if code, _, errOut := run(t, "-i", inv, "--state", state, "generate"); code != 0 {
		t.Fatalf("generate: %s", errOut)
	}

	t.Run("stale lock", func(t *testing.T) {
		lock := filepath.Join(state, "lock")
		rec := `{"pid":2147483646,"host":"elsewhere","user":"ops","op":"apply","since":"2026-01-02T03:04:05Z"}` + "\n"
		if err := os.WriteFile(lock, []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := run(t, "-i", inv, "--state", state, "generate")
		if code != 1 || !strings.Contains(errOut, "stale state lock") || !strings.Contains(hintLine(errOut), "--force-unlock") {
			t.Errorf("exit %d, stderr:\n%s", code, errOut)
		}
		if code, _, errOut = run(t, "-i", inv, "--state", state, "generate", "--force-unlock"); code != 0 {
			t.Errorf("generate --force-unlock: exit %d: %s", code, errOut)
		}
	})
	t.Run("loose key permissions", func(t *testing.T) {
		key := filepath.Join(state, "ca", "consul-agent-ca-key.pem")
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(key, 0o600)
		code, _, errOut := run(t, "-i", inv, "--state", state, "generate")
		if want := "run `chmod 600 " + key + "`"; code != 1 || !strings.Contains(hintLine(errOut), want) {
			t.Errorf("exit %d, want 1 and hint %q:\n%s", code, want, errOut)
		}
	})
	t.Run("no CA", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(empty, 0o700); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := run(t, "-i", inv, "--state", empty, "render", "--out", filepath.Join(t.TempDir(), "out"))
		if code != 1 || !strings.Contains(hintLine(errOut), "run `mtlsctl generate`") {
			t.Errorf("exit %d:\n%s", code, errOut)
		}
	})
}

// A directory other users could swap entries in gets the hint to close it,
// whatever node error wraps it.
func TestHintUnsafeDir(t *testing.T) {
	err := fmt.Errorf("staging failed, no node was changed: %w",
		&distribute.NodeError{Node: "n1", Op: "stage", Err: fmt.Errorf("%w: /etc/consul.d is owned by uid 998", distribute.ErrUnsafeDir)})
	if h := hint(err); !strings.Contains(h, "owned by root and not writable by group or others") {
		t.Errorf("hint %q", h)
	}
}
