package consultest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests below run scripts/build-consul.sh, the script that fills the
// cache Binary reads, against stand-in builds: shell scripts that answer
// `consul version` with two lines and a pause between them, as a real agent
// can. Reading only the first line through `| head -1` under pipefail used
// to kill such a consul with SIGPIPE and fail the script (exit 141) on a
// cold cache.

// standIn is a `consul` that reports version v the way Consul does.
func standIn(v string) string {
	return "#!/bin/sh\n" +
		"[ \"$1\" = version ] || { echo \"stand-in consul: unexpected $*\" >&2; exit 2; }\n" +
		"echo \"Consul v" + v + "\"\n" +
		"sleep 0.3\n" +
		"echo \"Protocol 2 spoken by default\"\n"
}

// builder writes a MTLSCTL_CONSUL_BUILDER script into dir: run as
// `BUILDER VERSION OUT`, it writes a stand-in reporting reports (the
// requested version when empty) to OUT. It fails when run a second time,
// so a cache hit that rebuilds is caught.
func builder(t *testing.T, dir, reports string) string {
	t.Helper()
	consul := filepath.Join(dir, "consul-stand-in")
	v := reports
	if v == "" {
		v = "$1"
	}
	script := "#!/bin/sh\nset -eu\n" +
		"called=" + shellQuote(filepath.Join(dir, "builder-called")) + "\n" +
		"if [ -e \"$called\" ]; then echo 'builder: called a second time' >&2; exit 1; fi\n" +
		": > \"$called\"\n" +
		"sed \"s/@VERSION@/" + v + "/\" " + shellQuote(consul) + " > \"$2\"\n" +
		"chmod 755 \"$2\"\n"
	write(t, consul, standIn("@VERSION@"))
	p := filepath.Join(dir, "builder")
	write(t, p, script)
	return p
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

type scriptRun struct {
	stdout, stderr string
	err            error
}

// runBuildScript runs scripts/build-consul.sh with bash for version, with
// cache and builder in its environment, bounded by a timeout.
func runBuildScript(t *testing.T, cache, builder, version string) scriptRun {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "..", "scripts", "build-consul.sh"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, script, version)
	cmd.Env = append(os.Environ(),
		"HOME="+t.TempDir(),
		"MTLSCTL_CONSUL_CACHE="+cache,
		"MTLSCTL_CONSUL_BUILDER="+builder,
	)
	// A stand-in's sleep may outlive a killed script while holding its pipes.
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("build-consul.sh %s did not finish within the timeout; stderr:\n%s", version, stderr.String())
	}
	return scriptRun{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// TestBuildScriptBuildsThenHitsCache runs the script on an empty cache (the
// post-build check), then again (the cache-hit check, where the builder
// must not run).
func TestBuildScriptBuildsThenHitsCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	b := builder(t, dir, "")
	want := filepath.Join(cache, "consul-1.6.2", "consul")

	for _, step := range []string{"cold cache: build", "warm cache: no build"} {
		r := runBuildScript(t, cache, b, "1.6.2")
		if r.err != nil {
			t.Fatalf("%s: build-consul.sh failed: %v\nstderr:\n%s", step, r.err, r.stderr)
		}
		if r.stdout != want+"\n" {
			t.Errorf("%s: stdout %q, want the cached path %q", step, r.stdout, want+"\n")
		}
		// Read, not run: each run of a stand-in costs its pause.
		if got, err := os.ReadFile(want); err != nil || !strings.Contains(string(got), `echo "Consul v1.6.2"`) {
			t.Errorf("%s: %s is not the stand-in for 1.6.2 (%v):\n%s", step, want, err, got)
		}
		if _, err := os.Stat(want + ".tmp"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s.tmp left behind (%v)", step, want, err)
		}
	}
}

// TestBuildScriptRefusesWrongVersion checks that a build reporting another
// version fails the script, says so, and is not cached.
func TestBuildScriptRefusesWrongVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	r := runBuildScript(t, cache, builder(t, dir, "1.6.1"), "1.6.2")
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("build-consul.sh: %v, want exit status 1\nstderr:\n%s", r.err, r.stderr)
	}
	for _, s := range []string{`reports "Consul v1.6.1"`, `not "Consul v1.6.2"`} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr %q does not say %s", r.stderr, s)
		}
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing (no path to use)", r.stdout)
	}
	cached := filepath.Join(cache, "consul-1.6.2", "consul")
	if _, err := os.Stat(cached); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the wrong build is in the cache at %s (%v)", cached, err)
	}
}
