package consulcfg

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/consultest"
)

// meshTree renders in with the node state directory under a temporary
// directory (so that the rendered firewall.sh reads the rendered rules) and
// writes the tree; it returns the tree's root and the state directory.
func meshTree(t *testing.T, in Input) (root, state string, bundles []Bundle) {
	t.Helper()
	root = t.TempDir()
	state = filepath.Join(root, "state")
	in.Topology.Cluster.NodeStateDir = state
	bundles, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(root, "tree")
	if err := WriteTree(tree, bundles); err != nil {
		t.Fatal(err)
	}
	return root, state, bundles
}

// TestFirewallScriptSyntax parses firewall.sh with every POSIX-ish shell
// here (`sh -n`), and checks that it runs with `sh` only, never exec.
func TestFirewallScriptSyntax(t *testing.T) {
	b, err := RenderNode(fiveNodeMesh(t), "n1")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "firewall.sh")
	if err := os.WriteFile(script, b.File("/var/lib/mtlsctl/firewall.sh").Content, 0o644); err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, sh := range [][]string{{"sh"}, {"dash"}, {"bash", "--posix"}, {"busybox", "sh"}} {
		bin, err := exec.LookPath(sh[0])
		if err != nil {
			continue
		}
		ran++
		args := append(sh[1:], "-n", script)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", strings.Join(sh, " "), err, out)
		}
	}
	if ran == 0 {
		t.Skip("no shell found")
	}
	// An unknown verb is refused with a usage line.
	out, err := exec.Command("sh", script, "reload").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "usage: sh ") {
		t.Errorf("sh firewall.sh reload: %v %s", err, out)
	}
}

// TestSystemdVerify runs `systemd-analyze verify` on the rendered units
// (the proxy units pointed at an existing binary: verify checks ExecStart).
func TestSystemdVerify(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	in := fiveNodeMesh(t)
	in.Topology.Cluster.Mesh.ConsulBinary = "/bin/true"
	root, _, bundles := meshTree(t, in)
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true to stand in for consul")
	}
	// ExecStart of the firewall unit is /bin/sh; the script it names need
	// not exist for verify.
	dir := filepath.Join(root, "tree", "n2", "etc", "systemd", "system")
	var units []string
	for _, p := range bundles[1].Mesh.Proxies {
		units = append(units, filepath.Join(dir, p.Unit))
	}
	units = append(units, filepath.Join(dir, FirewallUnit))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"verify"}, units...)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=")
	out, err := cmd.CombinedOutput()
	// verify complains about User=nobody ("Special user nobody configured,
	// this is not safe!") but accepts it; anything else is a defect.
	var other []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.Contains(line, "Special user nobody configured") {
			other = append(other, line)
		}
	}
	if err != nil || len(other) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(other, "\n"))
	}
}

// netnsOK skips unless the test can run iptables in a network namespace of
// its own (root, unshare and iptables present, and the kernel allowing it).
func netnsOK(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, tool := range append([]string{"unshare", "iptables", "iptables-restore"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	if out, err := exec.Command("unshare", "-n", "iptables", "-w", "-t", "nat", "-S", "OUTPUT").CombinedOutput(); err != nil {
		t.Skipf("iptables does not run in a new network namespace here: %v %s", err, out)
	}
}

// TestFirewallScriptNetns loads and unloads the rendered rules with the
// rendered script, with real iptables, in a network namespace of its own:
// load twice leaves one jump each and no doubled rule; unload twice leaves
// nothing of mtlsctl's; the operator's rules stay.
func TestFirewallScriptNetns(t *testing.T) {
	netnsOK(t)
	root, state, bundles := meshTree(t, fiveNodeMesh(t))
	n4 := bundles[3]
	rules := string(n4.File(filepath.Join(state, FirewallName)).Content)
	// The script reads the rules where the bundle puts them.
	src := filepath.Join(root, "tree", "n4", state)
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{FirewallName, FirewallScriptName} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	driver := `set -e
fw=$1
iptables -w -A INPUT -p tcp --dport 22 -m comment --comment operator -j ACCEPT
iptables -w -t nat -A OUTPUT -p tcp --dport 9999 -m comment --comment operator -j RETURN
sh "$fw" load
sh "$fw" load
echo '### filter'
iptables -w -S
echo '### nat'
iptables -w -t nat -S
sh "$fw" unload
sh "$fw" unload
echo '### filter after'
iptables -w -S
echo '### nat after'
iptables -w -t nat -S
`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", driver, "driver", filepath.Join(state, FirewallScriptName)).CombinedOutput()
	if err != nil {
		t.Fatalf("driver: %v\n%s", err, out)
	}
	sections := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "### "); ok {
			cur = name
			continue
		}
		if line != "" {
			sections[cur] = append(sections[cur], line)
		}
	}
	if len(sections[""]) > 0 {
		t.Errorf("load/unload printed:\n%s", strings.Join(sections[""], "\n"))
	}
	count := func(lines []string, want string) int {
		n := 0
		for _, l := range lines {
			if l == want {
				n++
			}
		}
		return n
	}
	filter, nat := sections["filter"], sections["nat"]
	if n := count(filter, "-A INPUT -j MTLSCTL-INPUT"); n != 1 {
		t.Errorf("%d jumps from INPUT after two loads, want 1:\n%s", n, strings.Join(filter, "\n"))
	}
	if n := count(nat, "-A OUTPUT -j MTLSCTL-EGRESS"); n != 1 {
		t.Errorf("%d jumps from nat OUTPUT after two loads, want 1:\n%s", n, strings.Join(nat, "\n"))
	}
	// The jumps come first, before the operator's rules.
	for _, c := range []struct {
		lines       []string
		chain, jump string
	}{{filter, "INPUT", FirewallChain}, {nat, "OUTPUT", EgressChain}} {
		i := slices.IndexFunc(c.lines, func(l string) bool { return strings.HasPrefix(l, "-A "+c.chain+" ") })
		if i < 0 || c.lines[i] != "-A "+c.chain+" -j "+c.jump {
			t.Errorf("the jump to %s is not %s's first rule:\n%s", c.jump, c.chain, strings.Join(c.lines, "\n"))
		}
	}
	// Every rule of the file is loaded once (iptables -S prints our lines
	// as written, but quotes a comment only when it holds a space).
	bare := regexp.MustCompile(`--comment "([^" ]*)"`)
	for _, line := range strings.Split(rules, "\n") {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		line = bare.ReplaceAllString(line, "--comment $1")
		got := filter
		if strings.HasPrefix(line, "-A "+EgressChain) {
			got = nat
		}
		if n := count(got, line); n != 1 {
			t.Errorf("rule loaded %d times, want once: %s", n, line)
		}
	}
	if got, want := len(nat)-countPrefix(nat, "-P ")-countPrefix(nat, "-N "), strings.Count(rules, "-A "+EgressChain+" ")+2; got != want {
		t.Errorf("nat holds %d rules, want %d (the DNATs, our jump and the operator's)", got, want)
	}
	for _, name := range []string{"filter after", "nat after"} {
		for _, l := range sections[name] {
			if strings.Contains(l, "MTLSCTL") {
				t.Errorf("%s: left behind: %s", name, l)
			}
		}
		if !slices.ContainsFunc(sections[name], func(l string) bool { return strings.Contains(l, "--comment operator") }) {
			t.Errorf("%s: the operator's rule is gone:\n%s", name, strings.Join(sections[name], "\n"))
		}
	}
}

func countPrefix(lines []string, p string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, p) {
			n++
		}
	}
	return n
}

// TestMeshProxyBindsSharedPort registers a node's rendered services with a
// real Consul 1.6.2 dev agent and runs the real built-in proxies of its
// egress service and of one ingress service, in a network namespace of its
// own holding the node's address: the egress proxy binds its public
// listener and every upstream on the one egress port, each on its own
// loopback address, and the ingress proxy binds the node address.
func TestMeshProxyBindsSharedPort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a consul agent")
	}
	netnsOK(t, "ip", "ss")
	bin := consultest.Binary(t, "1.6.2")
	in := fiveNodeMesh(t)
	for _, ports := range in.Ports.Nodes {
		ports["egress"] = []int{10700}
	}
	b, err := RenderNode(in, "n1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	services := filepath.Join(dir, ServicesName)
	if err := os.WriteFile(services, b.File("/etc/consul.d/"+ServicesName).Content, 0o644); err != nil {
		t.Fatal(err)
	}
	driver := `consul=$1 dir=$2 services=$3
ip link set lo up && ip addr add 10.0.0.11/32 dev lo || exit 1
"$consul" agent -dev -config-file "$services" -data-dir "$dir/data" >"$dir/agent.log" 2>&1 &
agent=$!
i=0
until "$consul" catalog services -http-addr 127.0.0.1:8500 2>/dev/null | grep -q egress-10-0-0-11-sidecar-proxy; do
	i=$((i+1)); [ $i -lt 100 ] || { echo agent did not start; kill $agent; exit 1; }
	sleep 0.2
done
"$consul" connect proxy -sidecar-for egress-10-0-0-11 -http-addr 127.0.0.1:8500 >"$dir/egress.log" 2>&1 &
eg=$!
"$consul" connect proxy -sidecar-for zk-2181-10-0-0-11 -http-addr 127.0.0.1:8500 >"$dir/zk.log" 2>&1 &
zk=$!
i=0
until [ "$(ss -Hltn | grep -c ':10700 ')" -ge 27 ] && ss -Hltn | grep -q '10.0.0.11:10001 '; do
	i=$((i+1)); [ $i -lt 100 ] || break
	sleep 0.2
done
echo '### listening'
ss -Hltn
kill $eg $zk $agent
wait
echo '### egress log'
cat "$dir/egress.log"
`
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "sh", "-c", driver, "driver", bin, dir, services)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("driver: %v\n%s", err, out)
	}
	listening, _, _ := strings.Cut(string(out), "### egress log")
	re := regexp.MustCompile(`\s(\S+):10700\s`)
	var binds []string
	for _, m := range re.FindAllStringSubmatch(listening, -1) {
		binds = append(binds, m[1])
	}
	slices.Sort(binds)
	want := []string{"127.0.0.1"}
	for _, p := range b.Mesh.Proxies {
		if p.Upstreams > 0 {
			for i := 1; i <= p.Upstreams; i++ {
				want = append(want, "127.77.0."+strconv.Itoa(i))
			}
		}
	}
	slices.Sort(want)
	if !slices.Equal(binds, want) {
		t.Errorf("listening on :10700: %v\nwant %v\n%s", binds, want, out)
	}
	if !strings.Contains(listening, "10.0.0.11:10001 ") {
		t.Errorf("the zk-2181 ingress proxy does not listen on 10.0.0.11:10001:\n%s", out)
	}
}
