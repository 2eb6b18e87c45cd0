package app

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// serveSandbox writes a sandbox's cluster file for example into dir (as
// `sandbox up` does) and runs SandboxServe in this process until the test
// ends or stop is called.
func serveSandbox(t *testing.T, dir string, o SandboxOptions) (stop func()) {
	t.Helper()
	tp, _, err := sandboxTopology(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeSandboxCluster(tp, dir); err != nil {
		t.Fatal(err)
	}
	if err := writeSandboxEnv(dir); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, sbReady))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- SandboxServe(ctx, Common{Stdout: &bytes.Buffer{}}, SandboxOptions{Dir: dir})
	}()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, sbReady)); err == nil {
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve ended before it was ready: %v", err)
		case <-deadline:
			cancel()
			t.Fatal("serve not ready after 10 s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10 s")
		}
	}
	t.Cleanup(stop)
	return stop
}

// The commands a user runs with `-i DIR/cluster.yaml --state DIR/state`
// and no other flag work against a sandbox: no ~/.ssh is read, the live
// steps are skipped and each rotation says which, once.
func TestSandboxCommandsWithPlainFlags(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home) // an empty home: the sandbox's own keys must be used
	t.Setenv("SSH_AUTH_SOCK", "")
	dir := filepath.Join(t.TempDir(), "sb")
	serveSandbox(t, dir, SandboxOptions{})

	tp, err := inventory.Load(filepath.Join(dir, sbCluster))
	if err != nil {
		t.Fatal(err)
	}
	if tp.Cluster.Sandbox == nil || tp.Cluster.Sandbox.Dir != dir || len(tp.Nodes) != 5 {
		t.Fatalf("cluster file: sandbox %+v, %d nodes", tp.Cluster.Sandbox, len(tp.Nodes))
	}
	if env, _ := os.ReadFile(filepath.Join(dir, sbEnv)); !strings.Contains(string(env), "MTLSCTL_INVENTORY="+filepath.Join(dir, sbCluster)) {
		t.Errorf("env file:\n%s", env)
	}
	for _, n := range tp.Nodes {
		if st, err := os.Stat(filepath.Join(dir, sbHostKeys, n.Name)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("host key of %s: %v %v", n.Name, st, err)
		}
	}

	var out, errw bytes.Buffer
	c := Common{Inventory: filepath.Join(dir, sbCluster), State: filepath.Join(dir, sbState), Stdout: &out, Stderr: &errw}
	ctx := context.Background()
	var d DistOptions // what the command line passes: no HomeDir, no SkipLive
	run := func(name string, f func() error) string {
		t.Helper()
		out.Reset()
		errw.Reset()
		if err := f(); err != nil {
			t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", name, err, out.String(), errw.String())
		}
		return out.String() + errw.String()
	}
	run("generate", func() error { return Generate(c, GenerateOptions{}) })
	run("apply", func() error { return Apply(ctx, c, d, ApplyOptions{Yes: true}) })
	if got := run("status", func() error { return Status(ctx, c, d) }); !strings.Contains(got, "only record their calls") {
		t.Errorf("status does not say what the sandbox fakes:\n%s", got)
	}
	for _, rot := range []struct {
		name  string
		f     func() error
		skips string
		done  string
	}{
		{"rotate certs", func() error { return RotateCerts(ctx, c, d, RotateOptions{Yes: true}) }, "skips the wait for a healthy cluster", "not verified as served"},
		{"rotate gossip", func() error { return RotateGossip(ctx, c, d, RotateOptions{Yes: true}) }, "skips the keyring steps", "no keyring was changed"},
		{"rotate tokens", func() error { return RotateTokens(ctx, c, d, RotateOptions{Yes: true}) }, "skips every step in Consul", "Consul was not told"},
		{"rotate ca", func() error { return RotateCA(ctx, c, d, RotateOptions{Yes: true}) }, "skips the health wait", "no agent verified it"},
	} {
		got := run(rot.name, rot.f)
		if n := strings.Count(got, "sandbox: no Consul agent runs"); n != 1 || !strings.Contains(got, rot.skips) || !strings.Contains(got, rot.done) {
			t.Errorf("%s: the skip note %d times (want once, with %q), done line %q:\n%s", rot.name, n, rot.skips, rot.done, got)
		}
		for _, claim := range []string{"rotated and served", "every member holds", "verified against its CA bundle", "new token(s) made in Consul"} {
			if strings.Contains(got, claim) {
				t.Errorf("%s claims a live step ran (%q):\n%s", rot.name, claim, got)
			}
		}
	}
	run("check-expiration --remote", func() error { return CheckExpiration(ctx, c, d, ExpiryOptions{Remote: true}) })
	if pending(t, c, d) {
		t.Fatal("changes pending right after the rotations")
	}

	// Drift: a node file edited by hand shows in plan.
	f := filepath.Join(dir, sbNodes, "n2", "root", "etc", "consul.d", "mtlsctl-agent.json")
	if err := os.WriteFile(f, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if !pending(t, c, d) {
		t.Fatal("plan does not see the edited mtlsctl-agent.json on n2")
	}
	if err := Verify(ctx, c, d, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "run none") {
		t.Errorf("verify on a sandbox: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(home)); len(entries) != 0 {
		t.Errorf("the user's home was written: %v", entries)
	}
}

// Down and up again keep the host keys and the ports; a port taken in
// between moves, and the cluster file and known_hosts follow.
func TestSandboxRestartKeepsKeysAndPorts(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	dir := filepath.Join(t.TempDir(), "sb")
	stop := serveSandbox(t, dir, SandboxOptions{Example: "edge-5"})
	first, err := inventory.Load(filepath.Join(dir, sbCluster))
	if err != nil {
		t.Fatal(err)
	}
	known1, _ := os.ReadFile(filepath.Join(dir, sbKnown))
	stop()

	// Something else takes n1's port while the sandbox is down.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(first.Nodes[0].SSHPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serveSandbox(t, dir, SandboxOptions{})
	again, err := inventory.Load(filepath.Join(dir, sbCluster))
	if err != nil {
		t.Fatal(err)
	}
	known2, _ := os.ReadFile(filepath.Join(dir, sbKnown))
	for i, n := range again.Nodes {
		moved := n.SSHPort != first.Nodes[i].SSHPort
		if moved != (i == 0) {
			t.Errorf("node %s: port %d -> %d", n.Name, first.Nodes[i].SSHPort, n.SSHPort)
		}
	}
	// The same host keys, n1 under its new port.
	k1 := strings.Fields(string(known1))
	k2 := strings.Fields(string(known2))
	if len(k1) != len(k2) {
		t.Fatalf("known_hosts:\n%s\n%s", known1, known2)
	}
	for i := range k1 {
		if i%3 != 0 && k1[i] != k2[i] {
			t.Errorf("host key changed across the restart:\n%s\n%s", known1, known2)
		}
	}
	if !strings.Contains(string(known2), "[127.0.0.1]:"+strconv.Itoa(again.Nodes[0].SSHPort)+" ") {
		t.Errorf("known_hosts does not name n1's new port %d:\n%s", again.Nodes[0].SSHPort, known2)
	}
	c := Common{Inventory: filepath.Join(dir, sbCluster), State: filepath.Join(dir, sbState), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	if err := Generate(c, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !pending(t, c, DistOptions{}) {
		t.Error("plan on a fresh sandbox has nothing to do")
	}
}

func TestSandboxDownChecksTheProcess(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	c := Common{Stdout: &out}

	// Nothing runs.
	if err := SandboxDown(c, SandboxOptions{Dir: dir}); err != nil || !strings.Contains(out.String(), "nothing runs") {
		t.Fatalf("down with no pid file: %v, %q", err, out.String())
	}

	// A pid file naming an unrelated live process: refused, not signalled.
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	pidFile := filepath.Join(dir, sbPid)
	os.WriteFile(pidFile, []byte(strconv.Itoa(sleep.Process.Pid)+"\n"), 0o644)
	err := SandboxDown(c, SandboxOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "not this sandbox's server") || !strings.Contains(err.Error(), "sleep") {
		t.Fatalf("down with another process's pid: %v", err)
	}
	if !alive(sleep.Process.Pid) {
		t.Fatal("the unrelated process was signalled")
	}
	// up refuses too rather than starting a second server.
	if err := SandboxUp(context.Background(), c, SandboxOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not this sandbox's server") {
		t.Fatalf("up with another process's pid: %v", err)
	}

	// A stale pid file (the process is gone) is removed.
	sleep.Process.Kill()
	sleep.Wait()
	out.Reset()
	if err := SandboxDown(c, SandboxOptions{Dir: dir}); err != nil || !strings.Contains(out.String(), "gone already") {
		t.Fatalf("down with a stale pid file: %v, %q", err, out.String())
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale pid file kept: %v", err)
	}

	os.WriteFile(pidFile, []byte("nonsense\n"), 0o644)
	if err := SandboxDown(c, SandboxOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not a process id") {
		t.Errorf("down with a garbled pid file: %v", err)
	}
}

func TestIsServeCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"/usr/bin/mtlsctl", "sandbox", "serve", "--dir", "/tmp/sb"}, true},
		{[]string{"/usr/bin/mtlsctl", "sandbox", "serve", "--dir", "/tmp/other"}, false},
		{[]string{"/usr/bin/mtlsctl", "sandbox", "up", "--dir", "/tmp/sb"}, false},
		{[]string{"sleep", "30"}, false},
		{nil, false},
	} {
		if got := isServeCommand(tc.args, "/tmp/sb"); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestSandboxUpUsage(t *testing.T) {
	c := Common{Stdout: &bytes.Buffer{}}
	for _, o := range []SandboxOptions{
		{},
		{Dir: t.TempDir(), Example: "edge-9", ClusterFile: "cluster.yaml"},
		{Dir: t.TempDir(), Example: "edge-99"},
	} {
		if err := SandboxUp(context.Background(), c, o); !errors.Is(err, ErrUsage) {
			t.Errorf("%+v: %v, want a usage error", o, err)
		}
	}
	// The user's own cluster file is validated, and named in the error.
	bad := filepath.Join(t.TempDir(), "mine.yaml")
	os.WriteFile(bad, []byte("cluster: x\n"), 0o644)
	if err := SandboxUp(context.Background(), c, SandboxOptions{Dir: t.TempDir(), ClusterFile: bad}); err == nil || !strings.Contains(err.Error(), "mine.yaml") {
		t.Errorf("bad cluster file: %v", err)
	}
}

// A server that dies, or never gets ready, makes up fail with the end of
// its log, and leaves no pid file and no process behind.
func TestSandboxUpReportsAFailedServer(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	bin := t.TempDir()
	dies := filepath.Join(bin, "dies")
	hangs := filepath.Join(bin, "hangs")
	os.WriteFile(dies, []byte("#!/bin/sh\necho 'cannot listen: boom'\nexit 1\n"), 0o755)
	os.WriteFile(hangs, []byte("#!/bin/sh\necho \"$$ not ready yet\" > \"$4/hangs.pid\"\nexec sleep 30\n"), 0o755)
	for _, tc := range []struct {
		exe, want string
	}{
		{dies, "cannot listen: boom"},
		{hangs, "not all listening after"},
	} {
		dir := filepath.Join(t.TempDir(), "sb")
		var errw bytes.Buffer
		c := Common{Stdout: &bytes.Buffer{}, Stderr: &errw}
		err := SandboxUp(context.Background(), c, SandboxOptions{Dir: dir, exe: tc.exe, wait: 500 * time.Millisecond})
		if !errors.Is(err, ErrReported) || !strings.Contains(errw.String()+err.Error(), tc.want) || !strings.Contains(errw.String(), "sandbox.log") {
			t.Errorf("%s: %v\nstderr:\n%s", filepath.Base(tc.exe), err, errw.String())
		}
		if _, err := os.Stat(filepath.Join(dir, sbPid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: pid file left: %v", filepath.Base(tc.exe), err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "hangs.pid")); err == nil {
			pid, _ := strconv.Atoi(strings.Fields(string(b))[0])
			if alive(pid) {
				t.Errorf("the server that hung (pid %d) still runs", pid)
			}
		}
	}
}
