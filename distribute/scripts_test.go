package distribute

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/steps from the step builders")

// sampleJournalNode is a node with files in two directories, owners, a
// sudo upload directory, a path with a space and a quote, and created
// directories: every branch of the step builders.
func sampleJournalNode() *journalNode {
	jn := &journalNode{Node: "n1", StateDir: "/var/lib/mtlsctl", Stage: stagePrefix + "0123456789abcdef",
		UploadDir: "/home/ops/" + uploadPrefix + "0123456789abcdef", PreviousGeneration: "aaaabbbbccccdddd",
		CreatedDirs: []string{"/etc/consul.d", "/etc/consul.d/tls"}}
	add := func(p, sum string, mode uint32, owner, group string) {
		jn.Files = append(jn.Files, journalFile{Path: p, Staged: filepath.Join(filepath.Dir(p), jn.Stage, filepath.Base(p)),
			SHA256: sum, Mode: mode, Owner: owner, Group: group})
	}
	add("/etc/consul.d/tls/agent-key.pem", strings.Repeat("1", 64), 0o640, "root", "consul")
	add("/etc/consul.d/tls/ca.pem", strings.Repeat("2", 64), 0o644, "", "")
	add("/etc/consul.d/mtlsctl-agent.json", strings.Repeat("3", 64), 0o640, "root", "consul")
	add("/etc/consul.d/it's here.json", strings.Repeat("4", 64), 0o644, "", "")
	add("/var/lib/mtlsctl/generation", strings.Repeat("5", 64), 0o600, "", "")
	return jn
}

// steps builds every step once, with fixed inputs.
func steps() map[string]string {
	jn := sampleJournalNode()
	run := "0123456789abcdef"
	return map[string]string{
		"inspect": inspectMeshScript([]string{"/etc/consul.d/tls/ca.pem", "/etc/consul.d/it's here.json"}, jn.StateDir, true,
			[]string{"mtlsctl-proxy-zk-2181-198-18-0-11.service", "mtlsctl-proxy-egress-198-18-0-11.service"}, true),
		"mesh": meshScript(&meshStep{Gone: []string{"mtlsctl-proxy-old.service"}, Unload: "", Deletes: []string{"/etc/systemd/system/mtlsctl-proxy-old.service"},
			DaemonReload: true, Load: "/var/lib/mtlsctl/firewall.sh", Units: []string{"mtlsctl-proxy-zk-2181-198-18-0-11.service", "mtlsctl-proxy-egress-198-18-0-11.service"}},
			jn.StateDir, run, true),
		"restartunit":     restartUnitScript("mtlsctl-proxy-zk-2181-198-18-0-11.service", "198.18.0.11 10001 1", jn.StateDir, run),
		"prepare":         prepareScript(jn, run, lockInfoText(run, "alice", "admin-1", 42, "apply", mustTime("2026-01-02T03:04:05Z"), "00112233aabbccdd", "123456"), "fedcba9876543210"),
		"verify":          verifyScript(jn, verifyOpts{configDir: "/etc/consul.d", runID: run, validate: validateConfigFiles(jn, "/etc/consul.d")}),
		"commit":          commitScript(jn, run, 3, &reloadStep{command: "systemctl reload consul", fallback: "systemctl restart consul"}),
		"cleanup":         cleanupScript(jn, run),
		"reload":          reloadScript("systemctl reload consul", "systemctl restart consul", jn.StateDir, run),
		"diskfree":        diskFreeScript([]string{"/etc/consul.d", "/var/lib/mtlsctl"}),
		"preflight-cheap": preflightScript(preflightVars{mode: "cheap"}),
		"preflight": preflightScript(preflightVars{mode: "full", cmds: requiredCommands, unitDir: "/etc/systemd/system",
			consul: "/usr/bin/consul", dirs: []string{"/etc/consul.d", "/var/lib/mtlsctl"},
			reach: []reachTarget{{"198.18.0.11", 8300, "Consul server n1"}, {"198.18.0.12", 10001, "zookeeper proxy on n2"}}, timeout: 3 * time.Second}),
	}
}

// The generated text of every step is pinned by a golden file, so a change
// to a step or to its variables shows in review (`go test ./distribute -update`).
func TestStepGolden(t *testing.T) {
	for name, text := range steps() {
		t.Run(name, func(t *testing.T) {
			golden := filepath.Join("testdata", "steps", name+".sh")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./distribute -update)", err)
			}
			if string(want) != text {
				t.Errorf("step %s differs from %s (run go test ./distribute -update and review the diff)", name, golden)
			}
		})
	}
}

// Every step file, and every generated step, parses with sh -n (and with
// dash and bash where they are installed: nodes have either as sh).
func TestStepsParse(t *testing.T) {
	var shells []string
	for _, sh := range []string{"sh", "dash", "bash"} {
		if _, err := exec.LookPath(sh); err == nil {
			shells = append(shells, sh)
		}
	}
	if len(shells) == 0 {
		t.Skip("no POSIX shell")
	}
	files, err := scriptFS.ReadDir("scripts")
	if err != nil {
		t.Fatal(err)
	}
	texts := steps()
	for _, f := range files {
		b, _ := scriptFS.ReadFile("scripts/" + f.Name())
		texts["file "+f.Name()] = string(b)
	}
	for name, text := range texts {
		for _, sh := range shells {
			if out, err := exec.Command(sh, "-n", "-c", text).CombinedOutput(); err != nil {
				t.Errorf("%s -n %s: %v\n%s", sh, name, err, out)
			}
		}
	}
}

// Every value reaches a step through transport.Quote: the preamble's
// assignments give the shell back exactly the Go strings.
func TestStepPreambleRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	odd := "it's a \"path\" with $HOME, `cmd`, \\ and\ttab"
	var v vars
	v.set("A", odd)
	v.set("B", lines([]string{odd, "/second"}))
	script := stepScript("reload", v)
	// Run only the preamble and lib (cut before the step body).
	pre := script[:strings.Index(script, "reload_agent\n")]
	pre = pre[:strings.LastIndex(pre, "\n")+1]
	out, err := exec.Command("sh", "-c", pre+`printf '%s|%s' "$A" "$B"`).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := odd + "|" + odd + "\n/second\n"; string(out) != want {
		t.Fatalf("round trip: %q, want %q", out, want)
	}
}

// Exit codes have unique names and values.
func TestExitCodesUnique(t *testing.T) {
	names, codes := map[string]bool{}, map[int]bool{}
	for _, e := range exitCodes {
		if names[e.name] || codes[e.code] || e.code <= 0 || e.code > 125 {
			t.Errorf("exit code %s=%d duplicated or out of range", e.name, e.code)
		}
		names[e.name], codes[e.code] = true, true
	}
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
