package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSandboxAsAUserWould builds the real binary and drives `sandbox up`,
// the commands against it with plain flags, and `sandbox down`, as a user
// would: separate processes, the server in the background.
func TestSandboxAsAUserWould(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "mtlsctl")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	home := filepath.Join(tmp, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "sb")
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}

	// mtlsctl runs the binary, bounded, and returns its output and exit code.
	mtlsctl := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("mtlsctl %s: %v", strings.Join(args, " "), err)
		}
		return out.String(), code
	}
	must := func(args ...string) string {
		t.Helper()
		out, code := mtlsctl(args...)
		if code != 0 {
			t.Fatalf("mtlsctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	servePID := func() int {
		b, err := os.ReadFile(filepath.Join(dir, "sandbox.pid"))
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}

	out := must("sandbox", "up", "--dir", dir, "--example", "edge-5")
	pid := servePID()
	if pid <= 1 {
		t.Fatalf("no pid file after up:\n%s", out)
	}
	// Whatever happens below, the server does not outlive the test.
	t.Cleanup(func() {
		if isServe(pid, dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	inv, state := filepath.Join(dir, "cluster.yaml"), filepath.Join(dir, "state")
	next := "mtlsctl -i " + inv + " --state " + state
	for _, want := range []string{next + " generate", next + " apply --yes", "only record their calls", "sandbox down --dir " + dir, filepath.Join(dir, "env")} {
		if !strings.Contains(out, want) {
			t.Errorf("up does not print %q:\n%s", want, out)
		}
	}
	if again := must("sandbox", "up", "--dir", dir); !strings.Contains(again, "already running") || servePID() != pid {
		t.Errorf("second up:\n%s", again)
	}

	g := []string{"-i", inv, "--state", state}
	must(append(g, "generate")...)
	must(append(g, "plan")...)
	must(append(g, "apply", "--yes")...)
	if out := must(append(g, "status")...); !strings.Contains(out, "only record their calls") {
		t.Errorf("status does not say what the sandbox fakes:\n%s", out)
	}
	if out := must(append(g, "rotate", "certs", "--yes")...); !strings.Contains(out, "not verified as served") {
		t.Errorf("rotate certs:\n%s", out)
	}
	must(append(g, "certs", "check-expiration", "--remote")...)
	if out, code := mtlsctl(append(g, "plan", "--detailed-exitcode")...); code != 0 {
		t.Fatalf("plan after rotate: exit %d\n%s", code, out)
	}
	// Drift: a node file edited by hand.
	f := filepath.Join(dir, "nodes", "n3", "root", "etc", "consul.d", "mtlsctl-agent.json")
	if err := os.WriteFile(f, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := mtlsctl(append(g, "plan", "--detailed-exitcode")...); code != 2 || !strings.Contains(out, "n3") {
		t.Errorf("plan after a drift: exit %d, want 2\n%s", code, out)
	}

	// Which ports to see closed after down.
	var ports []string
	for _, l := range strings.Split(string(readFile(t, filepath.Join(dir, "known_hosts"))), "\n") {
		if host, _, ok := strings.Cut(l, " "); ok {
			ports = append(ports, strings.NewReplacer("[", "", "]", "").Replace(host))
		}
	}
	if len(ports) != 5 {
		t.Fatalf("known_hosts names %d nodes, want 5", len(ports))
	}

	out = must("sandbox", "down", "--dir", dir)
	if !strings.Contains(out, "stay in "+dir) {
		t.Errorf("down:\n%s", out)
	}
	if isServe(pid, dir) {
		t.Fatalf("process %d still runs after down", pid)
	}
	for _, addr := range ports {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after down", addr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "sandbox.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file kept after down: %v", err)
	}
	if out := must("sandbox", "down", "--dir", dir); !strings.Contains(out, "nothing runs") {
		t.Errorf("second down:\n%s", out)
	}

	// A pid file naming an unrelated process: down refuses to signal it.
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	if err := os.WriteFile(filepath.Join(dir, "sandbox.pid"), []byte(strconv.Itoa(sleep.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := mtlsctl("sandbox", "down", "--dir", dir); code != 1 || !strings.Contains(out, "not signalling it") {
		t.Errorf("down with an unrelated pid: exit %d\n%s", code, out)
	}
	if err := sleep.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the unrelated process was signalled: %v", err)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("HOME was written: %v", entries)
	}
}

// isServe reports whether pid is alive and runs `sandbox serve --dir dir`.
func isServe(pid int, dir string) bool {
	if pid <= 1 {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(cmdline, []byte("sandbox\x00serve\x00--dir\x00"+dir))
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
