//go:build linux

package e2e

// The distribution benchmark behind `make bench` (scripts/bench-apply.sh).
// It is a test rather than a Go benchmark because it needs internal/testinfra/testnet's
// real sshd hosts (a testing.TB harness) and drives external tools; it runs
// only with MTLSCTL_BENCH=1 so that `go test ./...` skips it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/delayproxy"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// The benchmark's own network, so it can run beside other helpers' testnets.
const (
	benchSubnet = "198.18.60.0/24"
	benchPrefix = "bn"
)

// benchNodeDirs are the node directories the bundle lands in; they are emptied
// (through the host-side copies of the nodes' private dirs) before each tool
// runs, so every tool does the same work.
var benchNodeDirs = []string{"/etc/consul.d", "/var/lib/mtlsctl"}

// benchSettings are read from the environment once.
type benchSettings struct {
	sizes       []int         // MTLSCTL_BENCH_SIZES, default 20,50
	runs        int           // MTLSCTL_BENCH_RUNS, default 3 (Ansible runs once)
	concurrency int           // MTLSCTL_BENCH_CONCURRENCY, default 20
	ansibleMax  time.Duration // MTLSCTL_BENCH_ANSIBLE_MAX, default 10m: skip a size predicted to take longer
	latencyN    int           // MTLSCTL_BENCH_LATENCY_NODES, default 5 (0 skips the latency runs)
	out         string        // MTLSCTL_BENCH_OUT: where the Markdown benchReport goes (also logged)
}

func loadBenchSettings(t *testing.T) benchSettings {
	t.Helper()
	s := benchSettings{runs: 3, concurrency: 20, ansibleMax: 10 * time.Minute, latencyN: 5, out: os.Getenv("MTLSCTL_BENCH_OUT")}
	sizes := os.Getenv("MTLSCTL_BENCH_SIZES")
	if sizes == "" {
		sizes = "20,50"
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 200 {
			t.Fatalf("MTLSCTL_BENCH_SIZES=%q: %q is not a node count from 1 to 200", sizes, f)
		}
		s.sizes = append(s.sizes, n)
	}
	for _, v := range []struct {
		name string
		dst  *int
		min  int
	}{{"MTLSCTL_BENCH_RUNS", &s.runs, 1}, {"MTLSCTL_BENCH_CONCURRENCY", &s.concurrency, 1}, {"MTLSCTL_BENCH_LATENCY_NODES", &s.latencyN, 0}} {
		if env := os.Getenv(v.name); env != "" {
			n, err := strconv.Atoi(env)
			if err != nil || n < v.min {
				t.Fatalf("%s=%q: want an integer >= %d", v.name, env, v.min)
			}
			*v.dst = n
		}
	}
	if env := os.Getenv("MTLSCTL_BENCH_ANSIBLE_MAX"); env != "" {
		d, err := time.ParseDuration(env)
		if err != nil {
			t.Fatalf("MTLSCTL_BENCH_ANSIBLE_MAX=%q: want a duration such as 10m", env)
		}
		s.ansibleMax = d
	}
	return s
}

// benchMeasure is one timed run of a tool.
type benchMeasure struct {
	wall time.Duration
	cpu  time.Duration // admin side: user+system of the process and its reaped children
	// nodeCPU is the CPU the nodes' sshd sessions used (set by benchTimeTool).
	nodeCPU time.Duration
}

// benchRow is one line of the report.
type benchRow struct {
	tool    string
	nodes   int
	runs    int
	wall    time.Duration // median of the runs
	spread  string        // min-max over the runs
	cpu     time.Duration // median admin CPU, whole run
	nodeCPU time.Duration // median CPU of all nodes' sshd sessions, whole run
	use     benchUse      // SSH logins and sessions per node during one run
	note    string
}

// benchLatRow is one line of the latency report.
type benchLatRow struct {
	tool  string
	nodes int
	rtt   time.Duration
	wall  time.Duration // median of the runs
}

// benchReport collects everything TestBenchApply prints.
type benchReport struct {
	rows    []benchRow
	lat     []benchLatRow
	files   string
	loadPre string
}

// TestBenchApply measures mtlsctl apply against scp, sftp -b, parallel-scp
// and Ansible's copy module pushing the same rendered files to the same real
// sshd hosts, then the per-node cost of apply through a delaying proxy.
func TestBenchApply(t *testing.T) {
	if os.Getenv("MTLSCTL_BENCH") != "1" {
		t.Skip("benchmark: set MTLSCTL_BENCH=1 (or run `make bench`) to run it")
	}
	s := loadBenchSettings(t)
	bin := benchBinary(t)
	rep := &benchReport{loadPre: benchLoadavg()}

	for _, n := range s.sizes {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) { benchSize(t, s, bin, n, rep) })
	}
	if s.latencyN > 0 {
		t.Run("latency", func(t *testing.T) { benchLatency(t, s, bin, rep) })
	}

	text := rep.markdown(s)
	t.Log("\n" + text)
	if s.out != "" {
		if err := os.MkdirAll(filepath.Dir(s.out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.out, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("report written to %s", s.out)
	}
}

// benchBinary returns MTLSCTL_BIN (the script's `make build` output) or
// the package's own build of cmd/mtlsctl.
func benchBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("MTLSCTL_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return mtlsctlBinary(t)
}

// benchFleet is one testnet with a generated and rendered cluster.
type benchFleet struct {
	net     *testnet.Net
	nodes   []*testnet.Node
	bin     string
	dir     string // work dir
	cluster string // cluster file
	state   string // admin state dir
	render  string // `mtlsctl render --out` tree: render/<node>/<absolute path>
	env     []string
	files   []string // paths (relative to a node's render dir) of the bundle's files
}

// newBenchFleet starts n sshd hosts and runs `mtlsctl generate` and `render`.
func newBenchFleet(t *testing.T, bin string, n int) *benchFleet {
	t.Helper()
	tn := testnet.New(t, testnet.Options{Nodes: n, Subnet: benchSubnet, Prefix: benchPrefix, ReadyTimeout: 30 * time.Second})
	f := &benchFleet{net: tn, nodes: tn.Nodes(), bin: bin, dir: t.TempDir()}
	f.cluster = filepath.Join(f.dir, "cluster.yaml")
	f.state = filepath.Join(f.dir, "state")
	f.render = filepath.Join(f.dir, "render")
	// The tools see only the testnet's HOME (its .ssh holds the run's key
	// and known_hosts), no agent and no user ssh config.
	f.env = append(benchEnv(), "HOME="+tn.Home(), "KH="+tn.KnownHostsFile(), "KEY="+tn.ClientKeyFile(), "RENDER="+f.render)
	if err := writeBenchCluster(f.cluster, f.nodes, tn.ClientKeyFile(), tn.KnownHostsFile(), nil); err != nil {
		t.Fatal(err)
	}
	f.mtlsctl(t, "generate")
	f.mtlsctl(t, "render", "--out", f.render)
	err := filepath.WalkDir(filepath.Join(f.render, f.nodes[0].Name), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(f.render, f.nodes[0].Name), p)
		f.files = append(f.files, rel)
		return nil
	})
	if err != nil || len(f.files) == 0 {
		t.Fatalf("render produced no files for %s: %v", f.nodes[0].Name, err)
	}
	return f
}

// benchEnv is the test's environment without what would make the tools
// use the developer's keys or config.
func benchEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "MTLSCTL_INVENTORY", "MTLSCTL_STATE", "ANSIBLE_CONFIG":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// mtlsctl runs an untimed mtlsctl command on the fleet's cluster and state.
func (f *benchFleet) mtlsctl(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(f.bin, append([]string{"-i", f.cluster, "--state", f.state}, args...)...)
	cmd.Env = f.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mtlsctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// benchSSHOpts are the OpenSSH options every tool gets: no config file, the
// run's key only, strict host key checking against the run's known_hosts.
func benchSSHOpts(knownHosts, key string) []string {
	return []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + knownHosts, "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=30", "-i", key}
}

// writeBenchCluster writes a cluster file for nodes: the first three run the
// Consul servers, the rest a mix of components as in scripts/gen-cluster.sh.
// reload and restart are `true` (the reload itself is not what is measured).
// via, when set, gives a node's ssh_host and ssh_port override.
func writeBenchCluster(path string, nodes []*testnet.Node, key, knownHosts string, via func(i int) (string, int)) error {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: bench-%d\nconsul:\n  version: \"1.6.2\"\n  reload_command: \"true\"\n  restart_command: \"true\"\n", len(nodes))
	fmt.Fprintf(&b, "ssh:\n  user: root\n  port: 22\n  identity_file: %s\n  known_hosts: %s\n", key, knownHosts)
	b.WriteString("ports:\n  router: 20000-21999\n  message-processor: 22000-23999\n  qpid: 24000-24999\n  postgres: 25000-25999\n  egress: 26000-27999\n  openldap: 28000-28999\n")
	b.WriteString("datacenters:\n  - name: dc-1\n    nodes:\n")
	for i, nd := range nodes {
		comps := "[router, message-processor]"
		switch k := i + 1; {
		case k <= 3:
			comps = "[zookeeper, cassandra]"
		case k%10 == 4:
			comps = "[qpid]"
		case k%10 == 5:
			comps = "[postgres]"
		case k%10 == 6:
			comps = "[management-server, openldap, ui]"
		}
		fmt.Fprintf(&b, "      - name: %s\n        address: %s\n        components: %s\n", nd.Name, nd.Addr, comps)
		if via != nil {
			host, port := via(i)
			fmt.Fprintf(&b, "        ssh_host: %s\n        ssh_port: %d\n", host, port)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// clean empties the bundle's directories on every node.
func (f *benchFleet) clean(t *testing.T) {
	t.Helper()
	for _, nd := range f.nodes {
		for _, d := range benchNodeDirs {
			host := nd.Path(d)
			entries, err := os.ReadDir(host)
			if err != nil {
				t.Fatalf("clean %s:%s: %v", nd.Name, d, err)
			}
			for _, e := range entries {
				if err := os.RemoveAll(filepath.Join(host, e.Name())); err != nil {
					t.Fatalf("clean %s:%s: %v", nd.Name, d, err)
				}
			}
		}
	}
}

// benchSpan is the range of a per-node count over the nodes.
type benchSpan struct{ lo, hi int }

func (s benchSpan) String() string {
	if s.lo == s.hi {
		return strconv.Itoa(s.lo)
	}
	return fmt.Sprintf("%d-%d", s.lo, s.hi)
}

// benchUse is how a tool used SSH on each node: logins (connections) and
// sessions (exec commands and SFTP subsystems) opened on them.
type benchUse struct{ logins, sessions benchSpan }

// sshdCounts returns, per node, the accepted logins and started sessions in
// its sshd log (LogLevel VERBOSE).
func (f *benchFleet) sshdCounts(t *testing.T) (logins, sessions []int) {
	t.Helper()
	for _, nd := range f.nodes {
		data, err := os.ReadFile(filepath.Join(nd.Root, "logs", "sshd.log"))
		if err != nil {
			t.Fatalf("sshd log of %s: %v", nd.Name, err)
		}
		logins = append(logins, bytes.Count(data, []byte("Accepted publickey for ")))
		sessions = append(sessions, bytes.Count(data, []byte("Starting session: ")))
	}
	return logins, sessions
}

// benchDelta is the span of after[i]-before[i].
func benchDelta(before, after []int) benchSpan {
	s := benchSpan{lo: -1}
	for i := range after {
		d := after[i] - before[i]
		if s.lo < 0 || d < s.lo {
			s.lo = d
		}
		s.hi = max(s.hi, d)
	}
	return s
}

// nodeCPU returns the CPU time used so far by the sessions of every node's
// sshd: each listener's reaped children (cutime+cstime) plus its live
// children's own and reaped time. The listener writes its PID to
// ssh/sshd.pid under the node's root.
func (f *benchFleet) nodeCPU(t *testing.T) time.Duration {
	t.Helper()
	procs, err := benchProcTimes()
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	var ticks int64
	for _, nd := range f.nodes {
		data, err := os.ReadFile(filepath.Join(nd.Root, "ssh", "sshd.pid"))
		if err != nil {
			t.Fatalf("sshd pid of %s: %v", nd.Name, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatalf("sshd pid of %s: %v", nd.Name, err)
		}
		l := procs[pid]
		ticks += l.cutime + l.cstime
		for _, p := range procs {
			if p.ppid == pid {
				ticks += p.utime + p.stime + p.cutime + p.cstime
			}
		}
	}
	return time.Duration(ticks) * time.Second / benchClockTicks
}

// benchClockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on
// Linux for every architecture Go supports).
const benchClockTicks = 100

type benchProc struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// benchProcTimes reads pid, ppid and CPU times of every process.
func benchProcTimes() (map[int]benchProc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]benchProc, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the command name, which is in parentheses and may
		// hold spaces: state ppid ... utime(14) stime cutime cstime.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 15 {
			continue
		}
		num := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
		out[pid] = benchProc{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}
	}
	return out, nil
}

// verify checks that every node holds the rendered files (from its own
// render dir, or from source's for a tool that pushes one tree to all) and
// returns a note about file modes that differ.
func (f *benchFleet) verify(source string) error {
	var modeDiffs []string
	for _, nd := range f.nodes {
		src := nd.Name
		if source != "" {
			src = source
		}
		for _, rel := range f.files {
			want, err := os.ReadFile(filepath.Join(f.render, src, rel))
			if err != nil {
				return err
			}
			wst, err := os.Stat(filepath.Join(f.render, src, rel))
			if err != nil {
				return err
			}
			onNode := "/" + filepath.ToSlash(rel)
			got, err := os.ReadFile(nd.Path(onNode))
			if err != nil {
				return fmt.Errorf("node %s: %s: %w", nd.Name, onNode, err)
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("node %s: %s differs from the rendered file", nd.Name, onNode)
			}
			gst, err := os.Stat(nd.Path(onNode))
			if err != nil {
				return err
			}
			if gst.Mode().Perm() != wst.Mode().Perm() && len(modeDiffs) < 3 {
				modeDiffs = append(modeDiffs, fmt.Sprintf("%s %s is %o, rendered %o", nd.Name, onNode, gst.Mode().Perm(), wst.Mode().Perm()))
			}
		}
	}
	if len(modeDiffs) > 0 {
		return fmt.Errorf("%w: %s", errBenchModes, strings.Join(modeDiffs, "; "))
	}
	return nil
}

// errBenchModes marks a verify result where contents match but modes do not.
var errBenchModes = errors.New("modes not kept")

// run times one command: wall clock and the admin-side CPU of the process
// tree (wait4's rusage covers the children it reaped).
func benchRun(ctx context.Context, env []string, dir string, name string, args ...string) (benchMeasure, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	m := benchMeasure{wall: time.Since(start)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w\n%s", name, err, benchTail(out.String(), 2000))
	}
	return m, nil
}

func benchTail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// benchTool is one way of pushing the rendered files to every node.
type benchTool struct {
	name string
	bin  string // must be on PATH
	// source is the node whose rendered tree every node receives ("" = each
	// node its own): parallel-scp sends the same files to all hosts.
	source func(f *benchFleet) string
	run    func(ctx context.Context, f *benchFleet, conc int) (benchMeasure, error)
}

// nodeList writes "name address" lines for xargs.
func (f *benchFleet) nodeList() (string, error) {
	var b strings.Builder
	for _, nd := range f.nodes {
		fmt.Fprintf(&b, "%s %s\n", nd.Name, nd.Addr)
	}
	p := filepath.Join(f.dir, "nodes.txt")
	return p, os.WriteFile(p, []byte(b.String()), 0o644)
}

// benchShellOpts quotes benchSSHOpts for a sh -c script (the paths have no spaces).
func benchShellOpts() string {
	return strings.Join(benchSSHOpts(`"$KH"`, `"$KEY"`), " ")
}

var benchTools = []benchTool{
	{
		name: "mtlsctl apply",
		run: func(ctx context.Context, f *benchFleet, conc int) (benchMeasure, error) {
			return benchRun(ctx, f.env, f.dir, f.bin, "-i", f.cluster, "--state", f.state, "apply", "--yes", "--skip-live", "--concurrency", strconv.Itoa(conc))
		},
	},
	{
		// One scp per node (a single connection): the node's etc/ and var/
		// trees copied onto / (only the bundle's dirs exist in them).
		name: "scp (xargs -P)",
		bin:  "scp",
		run: func(ctx context.Context, f *benchFleet, conc int) (benchMeasure, error) {
			list, err := f.nodeList()
			if err != nil {
				return benchMeasure{}, err
			}
			script := `exec scp -q -r ` + benchShellOpts() + ` "$RENDER/$0/etc" "$RENDER/$0/var" "root@$1:/"`
			return benchRun(ctx, f.env, f.dir, "xargs", "-P", strconv.Itoa(conc), "-L", "1", "-a", list, "sh", "-c", script)
		},
	},
	{
		name: "sftp -b (xargs -P)",
		bin:  "sftp",
		run: func(ctx context.Context, f *benchFleet, conc int) (benchMeasure, error) {
			list, err := f.nodeList()
			if err != nil {
				return benchMeasure{}, err
			}
			if err := f.sftpBatches(); err != nil {
				return benchMeasure{}, err
			}
			script := `exec sftp -q -b "$RENDER/$0.batch" ` + benchShellOpts() + ` "root@$1"`
			return benchRun(ctx, f.env, f.dir, "xargs", "-P", strconv.Itoa(conc), "-L", "1", "-a", list, "sh", "-c", script)
		},
	},
	{
		name:   "parallel-scp (pssh)",
		bin:    "parallel-scp",
		source: func(f *benchFleet) string { return f.nodes[0].Name },
		run: func(ctx context.Context, f *benchFleet, conc int) (benchMeasure, error) {
			var hosts strings.Builder
			for _, nd := range f.nodes {
				fmt.Fprintf(&hosts, "root@%s\n", nd.Addr)
			}
			hf := filepath.Join(f.dir, "pssh-hosts")
			if err := os.WriteFile(hf, []byte(hosts.String()), 0o644); err != nil {
				return benchMeasure{}, err
			}
			src := filepath.Join(f.render, f.nodes[0].Name)
			extra := strings.Join(benchSSHOpts(f.net.KnownHostsFile(), f.net.ClientKeyFile()), " ")
			return benchRun(ctx, f.env, f.dir, "parallel-scp", "-h", hf, "-p", strconv.Itoa(conc), "-t", "300", "-r",
				"-x", extra, filepath.Join(src, "etc"), filepath.Join(src, "var"), "/")
		},
	},
	{
		name: "Ansible copy",
		bin:  "ansible-playbook",
		run: func(ctx context.Context, f *benchFleet, conc int) (benchMeasure, error) {
			if err := f.ansibleFiles(conc); err != nil {
				return benchMeasure{}, err
			}
			env := append(slices.Clone(f.env), "ANSIBLE_CONFIG="+filepath.Join(f.dir, "ansible.cfg"), "ANSIBLE_NOCOLOR=1")
			return benchRun(ctx, env, f.dir, "ansible-playbook", filepath.Join(f.dir, "push.yml"))
		},
	},
}

// sftpBatches writes render/<node>.batch: make the tls dir, put each file.
func (f *benchFleet) sftpBatches() error {
	for _, nd := range f.nodes {
		var b strings.Builder
		made := map[string]bool{}
		for _, d := range benchNodeDirs {
			made[d] = true
		}
		for _, rel := range f.files {
			dst := "/" + filepath.ToSlash(rel)
			if dir := filepath.Dir(dst); !made[dir] {
				fmt.Fprintf(&b, "-mkdir %s\n", dir)
				made[dir] = true
			}
			fmt.Fprintf(&b, "put %s %s\n", filepath.Join(f.render, nd.Name, rel), dst)
		}
		if err := os.WriteFile(filepath.Join(f.render, nd.Name+".batch"), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ansibleFiles writes the inventory, ansible.cfg (forks, strict host key
// checking, otherwise Ansible's defaults: ControlPersist on, no pipelining)
// and a playbook that copies each file with its mode.
func (f *benchFleet) ansibleFiles(forks int) error {
	var inv strings.Builder
	inv.WriteString("[nodes]\n")
	for _, nd := range f.nodes {
		fmt.Fprintf(&inv, "%s ansible_host=%s\n", nd.Name, nd.Addr)
	}
	fmt.Fprintf(&inv, "\n[nodes:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\nansible_ssh_common_args=-F /dev/null -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes\nansible_python_interpreter=/usr/bin/python3\n",
		f.net.ClientKeyFile(), f.net.KnownHostsFile())
	cfg := fmt.Sprintf("[defaults]\ninventory = %s\nforks = %d\nhost_key_checking = True\ngathering = explicit\nretry_files_enabled = False\ndeprecation_warnings = False\nlocal_tmp = %s\n",
		filepath.Join(f.dir, "inventory.ini"), forks, filepath.Join(f.dir, "ansible-tmp"))
	var pb strings.Builder
	pb.WriteString("- name: push the rendered mtlsctl bundle\n  hosts: nodes\n  gather_facts: false\n  tasks:\n")
	dirs := map[string]bool{}
	for _, d := range benchNodeDirs {
		dirs[d] = true
	}
	for _, rel := range f.files {
		if dir := filepath.Dir("/" + filepath.ToSlash(rel)); !dirs[dir] {
			fmt.Fprintf(&pb, "    - name: directory %s\n      ansible.builtin.file:\n        path: %s\n        state: directory\n        mode: \"0755\"\n", dir, dir)
			dirs[dir] = true
		}
	}
	pb.WriteString("    - name: bundle files\n      ansible.builtin.copy:\n        src: \"" + f.render + "/{{ inventory_hostname }}{{ item.path }}\"\n        dest: \"{{ item.path }}\"\n        mode: \"{{ item.mode }}\"\n      loop:\n")
	for _, rel := range f.files {
		st, err := os.Stat(filepath.Join(f.render, f.nodes[0].Name, rel))
		if err != nil {
			return err
		}
		fmt.Fprintf(&pb, "        - { path: \"/%s\", mode: \"%04o\" }\n", filepath.ToSlash(rel), st.Mode().Perm())
	}
	for name, content := range map[string]string{"inventory.ini": inv.String(), "ansible.cfg": cfg, "push.yml": pb.String()} {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchTimeTool runs one tool: clean, count logins and sessions, run, verify.
func benchTimeTool(t *testing.T, f *benchFleet, tl benchTool, conc int, timeout time.Duration) (benchMeasure, benchUse, string) {
	t.Helper()
	f.clean(t)
	loginsBefore, sessionsBefore := f.sshdCounts(t)
	cpuBefore := f.nodeCPU(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := tl.run(ctx, f, conc)
	if err != nil {
		t.Fatalf("%s on %d nodes: %v", tl.name, len(f.nodes), err)
	}
	m.nodeCPU = f.nodeCPU(t) - cpuBefore
	// sshd logs a session's start before the client sees it; a short
	// pause lets the last lines reach the log file.
	time.Sleep(100 * time.Millisecond)
	loginsAfter, sessionsAfter := f.sshdCounts(t)
	use := benchUse{logins: benchDelta(loginsBefore, loginsAfter), sessions: benchDelta(sessionsBefore, sessionsAfter)}
	src := ""
	if tl.source != nil {
		src = tl.source(f)
	}
	note := ""
	if err := f.verify(src); err != nil {
		if !errors.Is(err, errBenchModes) {
			t.Fatalf("%s on %d nodes: %v", tl.name, len(f.nodes), err)
		}
		note = err.Error()
	}
	t.Logf("%-20s %3d nodes: %6.2fs wall, %5.2fs admin CPU, %5.2fs node CPU, %s logins and %s sessions per node", tl.name, len(f.nodes), m.wall.Seconds(), m.cpu.Seconds(), m.nodeCPU.Seconds(), use.logins, use.sessions)
	return m, use, note
}

// benchSize runs every tool on a fleet of n nodes: the fast tools
// interleaved, s.runs rounds (the median is reported), then Ansible once.
func benchSize(t *testing.T, s benchSettings, bin string, n int, rep *benchReport) {
	f := newBenchFleet(t, bin, n)
	rep.files = benchDescribeFiles(f)
	type acc struct {
		walls, cpus, nodeCPUs []time.Duration
		use                   benchUse
		note                  string
	}
	accs := make([]*acc, len(benchTools))
	var slow []int
	for r := 0; r < s.runs; r++ {
		for i, tl := range benchTools {
			if tl.bin == "ansible-playbook" {
				if r == 0 {
					slow = append(slow, i)
				}
				continue
			}
			if tl.bin != "" {
				if _, err := exec.LookPath(tl.bin); err != nil {
					continue
				}
			}
			m, use, note := benchTimeTool(t, f, tl, s.concurrency, 10*time.Minute)
			if accs[i] == nil {
				accs[i] = &acc{use: use, note: note}
			}
			accs[i].walls = append(accs[i].walls, m.wall)
			accs[i].cpus = append(accs[i].cpus, m.cpu)
			accs[i].nodeCPUs = append(accs[i].nodeCPUs, m.nodeCPU)
		}
	}
	for _, i := range slow {
		tl := benchTools[i]
		if _, err := exec.LookPath(tl.bin); err != nil {
			rep.rows = append(rep.rows, benchRow{tool: tl.name, nodes: n, note: tl.bin + " not installed"})
			continue
		}
		if prev := rep.find(tl.name); prev != nil && prev.wall > 0 {
			predicted := time.Duration(float64(prev.wall) * float64(n) / float64(prev.nodes))
			if predicted > s.ansibleMax {
				rep.rows = append(rep.rows, benchRow{tool: tl.name, nodes: n, note: fmt.Sprintf("not run: %d nodes would take about %.0f s (scaled from %d nodes), over the %v budget", n, predicted.Seconds(), prev.nodes, s.ansibleMax)})
				continue
			}
		}
		m, use, note := benchTimeTool(t, f, tl, s.concurrency, 30*time.Minute)
		accs[i] = &acc{walls: []time.Duration{m.wall}, cpus: []time.Duration{m.cpu}, nodeCPUs: []time.Duration{m.nodeCPU}, use: use, note: note}
	}
	for i, tl := range benchTools {
		a := accs[i]
		if a == nil {
			if tl.bin != "ansible-playbook" {
				rep.rows = append(rep.rows, benchRow{tool: tl.name, nodes: n, note: tl.bin + " not installed"})
			}
			continue
		}
		r := benchRow{tool: tl.name, nodes: n, runs: len(a.walls), wall: benchMedian(a.walls), cpu: benchMedian(a.cpus), nodeCPU: benchMedian(a.nodeCPUs), use: a.use, note: a.note}
		if len(a.walls) > 1 {
			r.spread = fmt.Sprintf("%.2f-%.2f", slices.Min(a.walls).Seconds(), slices.Max(a.walls).Seconds())
		}
		if tl.source != nil {
			r.note = strings.TrimPrefix(r.note+"; same files (node "+tl.source(f)+"'s) to every node: it cannot send per-host content", "; ")
		}
		rep.rows = append(rep.rows, r)
	}
	slices.SortStableFunc(rep.rows, func(a, b benchRow) int { return a.nodes - b.nodes })
}

// benchDescribeFiles says what one node receives.
func benchDescribeFiles(f *benchFleet) string {
	var total int64
	var names []string
	for _, rel := range f.files {
		if st, err := os.Stat(filepath.Join(f.render, f.nodes[0].Name, rel)); err == nil {
			total += st.Size()
		}
		names = append(names, "/"+filepath.ToSlash(rel))
	}
	return fmt.Sprintf("%d files, %d bytes per node (%s)", len(f.files), total, strings.Join(names, ", "))
}

func (r *benchReport) find(tool string) *benchRow {
	for i := len(r.rows) - 1; i >= 0; i-- {
		if r.rows[i].tool == tool && r.rows[i].runs > 0 {
			return &r.rows[i]
		}
	}
	return nil
}

func benchMedian(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// benchLatency applies through delaying proxies: one client node alone (the
// per-node cost) and all latency nodes at once (servers reload one at a
// time), against scp and sftp -b through the same proxies.
func benchLatency(t *testing.T, s benchSettings, bin string, rep *benchReport) {
	f := newBenchFleet(t, bin, s.latencyN)
	lone := f.nodes[len(f.nodes)-1] // a client node (the first three are servers)
	for _, rtt := range []time.Duration{20 * time.Millisecond, 50 * time.Millisecond} {
		proxies := make([]*delayproxy.Proxy, len(f.nodes))
		ports := make([]int, len(f.nodes))
		var kh strings.Builder
		for i, nd := range f.nodes {
			p, err := delayproxy.Start(nd.SSHAddr(), rtt)
			if err != nil {
				t.Fatal(err)
			}
			proxies[i] = p
			ports[i] = p.Addr().(*net.TCPAddr).Port
			kh.WriteString(knownhosts.Line([]string{knownhosts.Normalize(p.Addr().String())}, nd.HostKey) + "\n")
		}
		khFile := filepath.Join(f.dir, fmt.Sprintf("known_hosts.%v", rtt))
		if err := os.WriteFile(khFile, []byte(kh.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		latCluster := filepath.Join(f.dir, fmt.Sprintf("cluster.%v.yaml", rtt))
		if err := writeBenchCluster(latCluster, f.nodes, f.net.ClientKeyFile(), khFile, func(i int) (string, int) { return "127.0.0.1", ports[i] }); err != nil {
			t.Fatal(err)
		}
		var list, loneList strings.Builder
		for i, nd := range f.nodes {
			line := fmt.Sprintf("%s %s %d\n", nd.Name, nd.Addr, ports[i])
			list.WriteString(line)
			if nd == lone {
				loneList.WriteString(line)
			}
		}
		lists := map[string]string{}
		for name, content := range map[string]string{"all": list.String(), "lone": loneList.String()} {
			p := filepath.Join(f.dir, fmt.Sprintf("lat-%s-%v.txt", name, rtt))
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			lists[name] = p
		}
		if err := f.sftpBatches(); err != nil {
			t.Fatal(err)
		}
		// scp and sftp reach the proxy and check the node's key under its
		// address with HostKeyAlias, in the testnet's known_hosts.
		scp := `exec scp -q -r -P "$2" -o HostKeyAlias="$1" ` + benchShellOpts() + ` "$RENDER/$0/etc" "$RENDER/$0/var" root@127.0.0.1:/`
		sftp := `exec sftp -q -b "$RENDER/$0.batch" -P "$2" -o HostKeyAlias="$1" ` + benchShellOpts() + ` root@127.0.0.1`
		apply := func(nodes ...string) func(ctx context.Context) (benchMeasure, error) {
			args := []string{"-i", latCluster, "--state", f.state, "apply", "--yes", "--skip-live", "--concurrency", strconv.Itoa(s.concurrency)}
			if len(nodes) > 0 {
				args = append(args, "--nodes", strings.Join(nodes, ","))
			}
			return func(ctx context.Context) (benchMeasure, error) { return benchRun(ctx, f.env, f.dir, f.bin, args...) }
		}
		xargs := func(list, script string) func(ctx context.Context) (benchMeasure, error) {
			return func(ctx context.Context) (benchMeasure, error) {
				return benchRun(ctx, f.env, f.dir, "xargs", "-P", strconv.Itoa(s.concurrency), "-L", "1", "-a", list, "sh", "-c", script)
			}
		}
		cases := []struct {
			name  string
			nodes int
			run   func(ctx context.Context) (benchMeasure, error)
		}{
			{"mtlsctl apply", 1, apply(lone.Name)},
			{"mtlsctl apply", len(f.nodes), apply()},
			{"scp", 1, xargs(lists["lone"], scp)},
			{"scp (xargs -P)", len(f.nodes), xargs(lists["all"], scp)},
			{"sftp -b", 1, xargs(lists["lone"], sftp)},
		}
		for _, c := range cases {
			var walls []time.Duration
			for r := 0; r < s.runs; r++ {
				f.clean(t)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				m, err := c.run(ctx)
				cancel()
				if err != nil {
					t.Fatalf("%s (%d nodes) at %v RTT: %v", c.name, c.nodes, rtt, err)
				}
				if c.nodes == len(f.nodes) {
					if err := f.verify(""); err != nil {
						t.Fatalf("%s (%d nodes) at %v RTT: %v", c.name, c.nodes, rtt, err)
					}
				}
				walls = append(walls, m.wall)
			}
			w := benchMedian(walls)
			t.Logf("%-16s %d node(s) at %v RTT: %.2fs (%.1f RTTs)", c.name, c.nodes, rtt, w.Seconds(), float64(w)/float64(rtt))
			rep.lat = append(rep.lat, benchLatRow{tool: c.name, nodes: c.nodes, rtt: rtt, wall: w})
		}
		for _, p := range proxies {
			p.Close()
		}
	}
}

// markdown renders the report.
func (r *benchReport) markdown(s benchSettings) string {
	var b strings.Builder
	b.WriteString("# Distribution benchmark: mtlsctl apply vs OpenSSH, pssh and Ansible\n\n")
	fmt.Fprintf(&b, "Generated by `make bench` (scripts/bench-apply.sh → `MTLSCTL_BENCH=1 go test ./e2e -run TestBenchApply`) on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- machine: %s\n", benchMachine())
	fmt.Fprintf(&b, "- load average (1, 5, 15 min) before: %s; after: %s (other jobs share the machine)\n", r.loadPre, benchLoadavg())
	fmt.Fprintf(&b, "- hosts: real OpenSSH sshd, one per network namespace (internal/testinfra/testnet, %s), all on this machine's %d cores, so the limit is CPU\n", benchSubnet, runtime.NumCPU())
	fmt.Fprintf(&b, "- payload: the rendered bundle, %s; mtlsctl also writes its 3 node-side state files. Every tool's result is checked byte for byte; the bundle's directories are emptied before each run.\n", r.files)
	fmt.Fprintf(&b, "- concurrency %d for every tool (xargs -P, parallel-scp -p, Ansible forks); wall time is the median of %d runs (Ansible: 1 run)\n", s.concurrency, s.runs)
	b.WriteString("- how each tool runs (every one with `-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=<run's known_hosts> -o IdentitiesOnly=yes -i <run's key>`, as root):\n")
	b.WriteString("  - `mtlsctl apply --yes --skip-live --concurrency N` on a cluster file naming the same key and known_hosts (`--skip-live`: the nodes run no Consul agent, so no health wait after the push)\n")
	b.WriteString("  - scp: `xargs -P N` running, per node, `scp -q -r render/<node>/etc render/<node>/var root@<node>:/` (one connection; OpenSSH 9's scp speaks SFTP)\n")
	b.WriteString("  - sftp: `xargs -P N` running, per node, `sftp -q -b <node>.batch root@<node>` (`-mkdir` for tls/, one `put` per file)\n")
	b.WriteString("  - parallel-scp: `parallel-scp -p N -r -x '<options>' render/n1/etc render/n1/var /` (it runs `scp -qC` per host)\n")
	b.WriteString("  - Ansible: `ansible-playbook` with forks N, `gather_facts: false`, host_key_checking on, a `file` task for tls/ and a `copy` task looping over the files with their modes; otherwise Ansible's defaults (ControlPersist 60s, no pipelining)\n")
	b.WriteString("- mtlsctl apply is the full two-phase apply: connect, inspect, lock, stage with mode and owner, SHA-256 verify on the node, commit with backups, state, reload (`true`; servers one at a time); `consul validate` is skipped (no consul binary on the nodes)\n\n")

	b.WriteString("| tool | nodes | wall (s) | runs min-max (s) | nodes/s | time vs mtlsctl | admin CPU per node (ms) | node sshd CPU per node (ms) | SSH logins per node | SSH sessions per node | note |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, x := range r.rows {
		if x.runs == 0 {
			fmt.Fprintf(&b, "| %s | %d | - | - | - | - | - | - | - | - | %s |\n", x.tool, x.nodes, x.note)
			continue
		}
		ratio := "-"
		if ref := r.get("mtlsctl apply", x.nodes); ref != nil && ref.wall > 0 {
			ratio = fmt.Sprintf("%.1fx", x.wall.Seconds()/ref.wall.Seconds())
		}
		spread := x.spread
		if spread == "" {
			spread = "-"
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f | %s | %.1f | %s | %.0f | %.0f | %s | %s | %s |\n", x.tool, x.nodes, x.wall.Seconds(), spread,
			float64(x.nodes)/x.wall.Seconds(), ratio, x.cpu.Seconds()*1000/float64(x.nodes), x.nodeCPU.Seconds()*1000/float64(x.nodes), x.use.logins, x.use.sessions, x.note)
	}
	b.WriteString("\nAdmin CPU is user+system time of the admin-side process tree (mtlsctl itself; xargs with its scp/sftp/ssh children; parallel-scp and its scp/ssh; ansible-playbook and its workers, without the ControlPersist masters it leaves behind). Node sshd CPU is what the nodes' sshd sessions (and the commands they ran) used, read from /proc for each node's sshd listener (its reaped children plus live ones; for Ansible it includes the ControlPersist sessions still open). SSH logins and sessions are sshd's `Accepted publickey` and `Starting session:` lines (a session is one exec command or one SFTP subsystem, multiplexed on the login's connection) per node during one run.\n\n")

	b.WriteString("## Targets (reported, not asserted)\n\n")
	for _, n := range s.sizes {
		ref := r.get("mtlsctl apply", n)
		if ref == nil {
			continue
		}
		for _, tgt := range []struct {
			tool string
			want float64
		}{{"scp (xargs -P)", 1.5}, {"Ansible copy", 30}} {
			o := r.get(tgt.tool, n)
			if o == nil {
				fmt.Fprintf(&b, "- %d nodes: mtlsctl vs %s (target >= %.1fx): not measured\n", n, tgt.tool, tgt.want)
				continue
			}
			got := o.wall.Seconds() / ref.wall.Seconds()
			fmt.Fprintf(&b, "- %d nodes: mtlsctl is %.1fx faster than %s (target >= %.1fx): %s\n", n, got, tgt.tool, tgt.want, benchVerdict(got >= tgt.want))
		}
		fmt.Fprintf(&b, "- %d nodes: SSH connections per node for the whole apply: %s (target 1): %s; sessions on it per node: %s\n", n, ref.use.logins, benchVerdict(ref.use.logins == benchSpan{1, 1}), ref.use.sessions)
	}

	if len(r.lat) > 0 {
		b.WriteString("\n## Latency: through a userspace proxy delaying every chunk (internal/testinfra/delayproxy)\n\n")
		b.WriteString("One client node alone gives the per-node cost; all nodes at once adds the servers' one-at-a-time reload. scp and sftp reach the same proxies (`-P port -o HostKeyAlias=<node address>`). Round trips = wall / RTT (includes the fixed CPU cost); the slope column is (wall at 50 ms - wall at 20 ms) / 30 ms, the round trips without it.\n\n")
		b.WriteString("| tool | nodes | RTT | wall (s) | round trips | slope (round trips) |\n|---|---:|---:|---:|---:|---:|\n")
		for _, x := range r.lat {
			slope := "-"
			if x.rtt == 50*time.Millisecond {
				for _, y := range r.lat {
					if y.tool == x.tool && y.nodes == x.nodes && y.rtt == 20*time.Millisecond {
						slope = fmt.Sprintf("%.1f", (x.wall-y.wall).Seconds()/0.030)
					}
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %d ms | %.2f | %.1f | %s |\n", x.tool, x.nodes, x.rtt.Milliseconds(), x.wall.Seconds(), float64(x.wall)/float64(x.rtt), slope)
		}
	}
	return b.String()
}

func (r *benchReport) get(tool string, nodes int) *benchRow {
	for i := range r.rows {
		if r.rows[i].tool == tool && r.rows[i].nodes == nodes && r.rows[i].runs > 0 {
			return &r.rows[i]
		}
	}
	return nil
}

func benchVerdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// benchMachine describes the machine and tool versions.
func benchMachine() string {
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					mem = fmt.Sprintf("%.1f GiB", kb/1048576)
				}
			}
		}
	}
	model := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	version := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil && len(out) == 0 {
			return name + " not installed"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return fmt.Sprintf("%d cores (nproc), %s, %s; %s; %s; %s; parallel-scp %s", runtime.NumCPU(), mem, model, runtime.Version(),
		version("ssh", "-V"), version("ansible", "--version"), version("parallel-scp", "--version"))
}

func benchLoadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
