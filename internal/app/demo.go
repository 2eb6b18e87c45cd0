package app

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/mtlsctl/mtlsctl/examples"
	"github.com/mtlsctl/mtlsctl/internal/progress"
	"github.com/mtlsctl/mtlsctl/internal/sshsandbox"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// DemoOptions are the options of `demo`.
type DemoOptions struct {
	Example string // an example topology: edge-5, edge-9, edge-12, edge-13
	Dir     string // keep the sandbox here ("" = a temporary directory, removed)
}

// Demo runs the whole bootstrap (generate, plan, apply, status, and a second
// plan that shows nothing left to do) against a sandbox cluster: one
// in-process SSH/SFTP server per node on 127.0.0.1, each with its own host
// key and file root. It needs no root, no setup and no network, and it never
// reads the user's ~/.ssh: the sandbox has its own client key and
// known_hosts.
func Demo(ctx context.Context, c Common, o DemoOptions) error {
	data, err := examples.FS.ReadFile(o.Example + ".yaml")
	if err != nil {
		return Usagef("--example %q: no such example (try edge-5, edge-9, edge-12 or edge-13)", o.Example)
	}
	t, err := inventory.Parse(o.Example+".yaml", data)
	if err != nil {
		return err
	}

	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "mtlsctl-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("--dir %s is not empty: give an empty or new directory", dir)
	}
	sb, err := startSandbox(t, dir)
	if err != nil {
		return err
	}
	defer sb.close()

	clusterFile := filepath.Join(dir, "cluster.yaml")
	yml, err := inventory.Marshal(t.Cluster)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(clusterFile, yml, 0o644); err != nil {
		return err
	}

	sub := c
	sub.Inventory = clusterFile
	sub.State = filepath.Join(dir, "state")
	sub.Interactive = false
	// The sandbox nodes hold files but run no Consul agents: skip the live
	// health checks that apply and status make on a real cluster.
	d := DistOptions{Concurrency: 20, HomeDir: filepath.Join(dir, "home"), SkipLive: true, annotate: sandboxProgress}

	step := func(title string) { c.printf("\n==> %s\n", title) }
	c.printf("sandbox: %d nodes of %s (%d datacenter(s)), one SSH server each on 127.0.0.1, files under %s\n",
		len(t.Nodes), o.Example, len(t.Cluster.Datacenters), filepath.Join(dir, "nodes"))

	step("mtlsctl inventory validate")
	if err := Validate(sub); err != nil {
		return err
	}
	step("mtlsctl generate   (CA, gossip key, one certificate per node)")
	if err := Generate(sub, GenerateOptions{}); err != nil {
		return err
	}
	step("mtlsctl plan")
	if err := Plan(ctx, sub, d, PlanOptions{}); err != nil {
		return err
	}
	step("mtlsctl apply --yes   (stage on every node, verify, commit everywhere, reload)")
	if err := Apply(ctx, sub, d, ApplyOptions{Yes: true}); err != nil {
		return err
	}
	step("mtlsctl status")
	if err := Status(ctx, sub, d); err != nil {
		return err
	}
	step("mtlsctl plan --detailed-exitcode   (again: nothing left to do)")
	if err := Plan(ctx, sub, d, PlanOptions{DetailedExit: true}); err != nil {
		return err
	}
	reloads, proxies, firewalls := 0, 0, 0
	for _, s := range sb.servers {
		for _, call := range s.Calls() {
			switch {
			case strings.HasPrefix(call, "systemctl reload consul") || strings.HasPrefix(call, "systemctl restart consul"):
				reloads++
			case strings.HasPrefix(call, "systemctl start mtlsctl-proxy-"):
				proxies++
			case strings.HasPrefix(call, "iptables-restore"):
				firewalls++
			}
		}
	}
	c.printf("\ndone: %d nodes bootstrapped; the sandbox recorded %d agent reload/restart calls, %d proxy unit starts and %d firewall loads (it runs no agent, proxy or iptables: its stand-ins only record the calls).\n",
		len(t.Nodes), reloads, proxies, firewalls)
	if o.Dir != "" {
		c.printf("the sandbox is kept in %s: try `mtlsctl -i %s --state %s status`\n", dir, clusterFile, sub.State)
		c.printf("(the SSH servers stop when the demo ends; node files stay under %s)\n", filepath.Join(dir, "nodes"))
	}
	return nil
}

// sandboxProgress says what the sandbox did where distribute's progress
// describes a real node: the sandbox's consul and systemctl are stand-ins
// that record the call and succeed, so "consul validate passed" would claim
// a check that never ran. (The text comes from distribute; it is matched
// here rather than changed there, where only the demo knows the difference.)
func sandboxProgress(e progress.Event) progress.Event {
	if e.Err != nil {
		return e
	}
	switch {
	case e.Step == "validate" && e.Msg == "consul validate passed":
		e.Msg = "the sandbox's stand-in consul recorded `consul validate`; nothing was validated"
	case e.Step == "reload" || e.Step == "restart":
		e.Msg = strings.TrimSpace(e.Msg + " (the sandbox's stand-in systemctl only records it; no agent runs)")
	}
	return e
}

type sandbox struct {
	servers []*sshsandbox.Server
}

func (s *sandbox) close() {
	for _, srv := range s.servers {
		srv.Close()
	}
}

// startSandbox starts one SSH server per node and points the cluster's SSH
// settings at them: a fresh client key, a known_hosts file with every
// server's host key (so host keys are verified as on a real fleet), and the
// current user (the sandbox cannot chown, so file owners are dropped).
func startSandbox(t *inventory.Topology, dir string) (*sandbox, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "mtlsctl demo")
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "home", ".ssh", "id_ed25519")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}

	sb := &sandbox{}
	var known strings.Builder
	for _, n := range t.Nodes {
		srv, err := sshsandbox.Start(sshsandbox.Options{
			Dir:            filepath.Join(dir, "nodes", n.Name),
			AuthorizedKeys: []ssh.PublicKey{sshPub},
		})
		if err != nil {
			sb.close()
			return nil, fmt.Errorf("starting the sandbox SSH server for %s: %w", n.Name, err)
		}
		sb.servers = append(sb.servers, srv)
		n.SSHHost, n.SSHPort, n.SSHUser = "127.0.0.1", srv.Port(), ""
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s", srv.Port(), ssh.MarshalAuthorizedKey(srv.HostKey()))
	}
	knownFile := filepath.Join(dir, "known_hosts")
	if err := atomicfile.WriteFile(knownFile, []byte(known.String()), 0o600); err != nil {
		sb.close()
		return nil, err
	}
	u, err := user.Current()
	if err != nil {
		sb.close()
		return nil, errors.New("demo: cannot tell the current user")
	}
	t.Cluster.SSH.User = u.Username
	t.Cluster.SSH.IdentityFile = keyFile
	t.Cluster.SSH.KnownHosts = knownFile
	t.Cluster.SSH.Bastion = ""
	t.Cluster.SSH.Sudo = false
	t.Cluster.Consul.User, t.Cluster.Consul.Group = "", ""
	return sb, nil
}
