package app

import (
	"context"
	"fmt"
	"github.com/mtlsctl/mtlsctl/internal/atomicfile"
	"os"
	"path/filepath"
	"strings"

	"github.com/mtlsctl/mtlsctl/examples"
	"github.com/mtlsctl/mtlsctl/internal/progress"
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
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	sb, err := startSandbox(t, dir, false)
	if err != nil {
		return err
	}
	defer sb.close()
	// The cluster file it keeps says what its nodes are.
	t.Cluster.Sandbox = &inventory.Sandbox{Dir: dir}

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
