package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// TestGlobalFlagsAfterCommand: -i, --state and -o are taken before and
// after the command; typed on both sides, the later one wins.
func TestGlobalFlagsAfterCommand(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	inv := example("edge-5")
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	noState := filepath.Join(t.TempDir(), "no-state")
	tests := []struct {
		name   string
		env    string // MTLSCTL_INVENTORY
		args   []string
		code   int
		json   bool   // stdout is JSON
		stderr string // in stderr, when set
	}{
		{name: "-o json after a subcommand", args: []string{"inventory", "validate", "-i", inv, "-o", "json"}, json: true},
		{name: "--output after a command", args: []string{"ports", "--inventory", inv, "--output", "json"}, json: true},
		{name: "later -o wins", args: []string{"-o", "json", "inventory", "validate", "-i", inv, "-o", "text"}},
		{name: "later -i wins", args: []string{"-i", absent, "inventory", "validate", "-i", inv}},
		{name: "-i after the command beats the env var", env: absent, args: []string{"inventory", "validate", "-i", inv}},
		{name: "-i before the command beats the env var", env: absent, args: []string{"-i", inv, "inventory", "validate"}},
		{name: "env var when no -i", env: absent, args: []string{"inventory", "validate"}, code: 1, stderr: "absent.yaml"},
		{name: "-i between group and subcommand", args: []string{"inventory", "-i", inv, "validate"}},
		{name: "--state after a subcommand", args: []string{"-i", inv, "rotate", "certs", "--yes", "--state", noState}, code: 1, stderr: "no-state"},
		{name: "-o stays --output next to plan's --out", args: []string{"-i", inv, "plan", "-out", "saved.plan", "-o", "yaml"}, code: 3, stderr: `--output "yaml"`},
		{name: "bad -o after the command", args: []string{"ports", "-i", inv, "-o", "yaml"}, code: 3, stderr: "use text or json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MTLSCTL_INVENTORY", tc.env)
			code, out, errOut := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, errOut)
			}
			if tc.code == 0 && json.Valid([]byte(out)) != tc.json {
				t.Errorf("JSON output %v, want %v:\n%s", !tc.json, tc.json, out)
			}
			if !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errOut)
			}
		})
	}
}

// TestHelpAndSuggestions: `help`, `help CMD` and a did-you-mean for a
// mistyped command, exit 3.
func TestHelpAndSuggestions(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{args: []string{"help"}, stdout: "COMMANDS:"},
		{args: []string{"help", "plan"}, stdout: "mtlsctl plan - "},
		{args: []string{"rotate", "help", "certs"}, stdout: "mtlsctl rotate certs - "},
		{args: []string{"plan", "--help"}, stdout: "--inventory FILE, -i FILE"},
		{args: []string{"plna"}, code: 3, stderr: `unknown command "plna": did you mean "plan"?`},
		{args: []string{"rotate", "cert"}, code: 3, stderr: `unknown command "cert": did you mean "certs"?`},
		{args: []string{"inventory", "valdiate"}, code: 3, stderr: `did you mean "validate"?`},
		{args: []string{"xyzzy"}, code: 3, stderr: `unknown command "xyzzy" (commands:`},
		{args: []string{"help", "plna"}, code: 3, stderr: `Did you mean "plan"?`},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, errOut)
			}
			if !strings.Contains(out, tc.stdout) || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stdout %q / stderr %q, want %q / %q", out, errOut, tc.stdout, tc.stderr)
			}
		})
	}
	if got := closest("xyzzy", []string{"plan", "apply"}); got != "" {
		t.Errorf("closest(xyzzy) = %q, want none", got)
	}
}

func TestMissingClusterFileSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := run(t, "-i", filepath.Join(dir, "cluster.yaml"), "plan")
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"cluster.yaml: no such file", "hint: give the cluster file with -i FILE or MTLSCTL_INVENTORY", "examples/"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// TestUsageErrorsExit3: every bad flag value is a usage error (exit 3)
// naming the flag, found before anything is asked or read from a node.
func TestUsageErrorsExit3(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	inv := example("edge-5")
	state := filepath.Join(t.TempDir(), "state")
	at := func(args ...string) []string { return append([]string{"-i", inv, "--state", state}, args...) }
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"missing required flag", at("render"), "--out DIR is required"},
		{"bad duration", at("status", "--timeout", "abc"), `invalid value "abc" for flag -timeout`},
		{"bad number", at("apply", "--concurrency", "x"), `invalid value "x" for flag -concurrency`},
		{"unknown node", at("status", "--nodes", "n9"), `"n9" is not a node`},
		{"empty --nodes", at("plan", "--nodes", ""), "--nodes names no node"},
		{"comma --nodes", at("uninstall", "--nodes", ","), "--nodes names no node"},
		{"zero concurrency", at("apply", "--concurrency", "0"), "--concurrency 0: give a positive value"},
		{"negative concurrency", at("rotate", "certs", "--concurrency", "-2"), "--concurrency -2: give a positive value"},
		{"zero timeout", at("plan", "--timeout", "0s"), "--timeout 0s: give a positive value"},
		{"negative timeout", at("preflight", "--timeout", "-1s"), "--timeout -1s"},
		{"negative warn-days", at("certs", "check-expiration", "--warn-days", "-1"), "--warn-days -1: give zero or more days"},
		{"--timeout without --remote", at("certs", "check-expiration", "--timeout", "5s"), "with --remote only"},
		{"zero cert-days", at("generate", "--cert-days", "0"), "--cert-days 0: give a positive value"},
		{"zero ca-days", at("generate", "--ca-days", "0"), "--ca-days 0"},
		{"rotate certs zero cert-days", at("rotate", "certs", "--cert-days", "0"), "--cert-days 0"},
		{"rotate certs bad key type", at("rotate", "certs", "--key-type", "dsa"), `--key-type: unknown key type "dsa"`},
		{"rotate ca bad CA key type", at("rotate", "ca", "--ca-key-type", "rsa-1024"), "--ca-key-type"},
		{"skip-live where it cannot act", at("verify", "--skip-live"), "flag provided but not defined: -skip-live"},
		{"ports -o json --format table", at("-o", "json", "ports", "--format", "table"), "drop one"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, tc.args...)
			if code != 3 || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, want 3 with %q:\n%s", code, tc.stderr, errOut)
			}
		})
	}
}

// TestGenerateNotesIdleFlags: a flag that did not act this time gets a note
// on stderr (exit 0) saying why and what would act.
func TestGenerateNotesIdleFlags(t *testing.T) {
	inv := example("edge-5")
	state := filepath.Join(t.TempDir(), "state")
	gen := func(args ...string) string {
		t.Helper()
		code, _, errOut := run(t, append([]string{"-i", inv, "--state", state, "generate"}, args...)...)
		if code != 0 {
			t.Fatalf("generate %v: exit %d: %s", args, code, errOut)
		}
		return errOut
	}
	if errOut := gen("--ca-days", "400", "--cert-days", "90", "--key-type", "rsa-2048"); strings.Contains(errOut, "note:") {
		t.Errorf("the first generate used every flag, yet:\n%s", errOut)
	}
	for _, tc := range []struct {
		args []string
		want []string
		not  string
	}{
		{[]string{"--cert-days", "30"}, []string{"note: --cert-days did nothing", "every node's certificate is current", "`mtlsctl rotate certs --cert-days 30`"}, "CA"},
		{[]string{"--key-type", "ecdsa-p384", "--cert-days", "30"}, []string{"--key-type and --cert-days did nothing", "rotate certs --cert-days 30 --key-type ecdsa-p384"}, "CA"},
		{[]string{"--ca-key-type", "rsa-4096", "--name-constraints"}, []string{"--ca-key-type and --name-constraints did nothing", "CA in", "is never replaced", "`mtlsctl rotate ca`"}, "certificate"},
		{nil, nil, "note:"},
	} {
		errOut := gen(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("generate %v: stderr lacks %q:\n%s", tc.args, w, errOut)
			}
		}
		if strings.Contains(errOut, tc.not) {
			t.Errorf("generate %v: stderr has %q:\n%s", tc.args, tc.not, errOut)
		}
	}
}

func TestPortsFormatAndOutput(t *testing.T) {
	inv := example("edge-5")
	for _, tc := range []struct {
		args []string
		code int
		json bool
	}{
		{args: []string{"ports"}},
		{args: []string{"ports", "-o", "json"}, json: true},
		{args: []string{"ports", "--format", "json"}, json: true},
		{args: []string{"-o", "json", "ports", "--format", "json"}, json: true},
		{args: []string{"-o", "json", "ports", "--format", "apigee-report"}, json: true},
		{args: []string{"ports", "--format", "table"}},
		{args: []string{"ports", "--format", "table", "-o", "json"}, code: 3},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, append([]string{"-i", inv, "--state", filepath.Join(t.TempDir(), "s")}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d: %s", code, tc.code, errOut)
			}
			if code == 0 && json.Valid([]byte(out)) != tc.json {
				t.Errorf("JSON %v, want %v:\n%s", !tc.json, tc.json, out)
			}
			if code == 3 && !strings.Contains(errOut, "-o json and --format table contradict each other: drop one") {
				t.Errorf("stderr: %s", errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	info := func(main string, settings ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: main}}
		for i := 0; i+1 < len(settings); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return bi
	}
	for _, tc := range []struct {
		name string
		set  string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"ldflags wins", "v1.2.3", info("v0.9.0"), true, "v1.2.3"},
		{"module version", "", info("v0.9.0"), true, "v0.9.0 (go1.99)"},
		{"vcs revision", "", info("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), true, "0123456789ab (go1.99)"},
		{"dirty tree", "", info("(devel)", "vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), true, "0123456789ab-dirty (go1.99)"},
		{"nothing recorded", "", info("(devel)"), true, "devel (go1.99)"},
		{"no build info", "", nil, false, "unknown (no build information)"},
	} {
		if got := versionOf(tc.set, tc.info, tc.ok); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	code, out, _ := run(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "mtlsctl version ") || strings.Contains(out, "version dev\n") {
		t.Errorf("--version: exit %d: %q", code, out)
	}
}

// TestValidateWarnings: warnings go to stderr with file:line in text mode,
// into a "warnings" array with -o json; the exit code stays 0.
func TestValidateWarnings(t *testing.T) {
	data, err := os.ReadFile(example("edge-5"))
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "cluster.yaml")
	doc := strings.Replace(string(data), "components: [postgres, qpid]", "components: []", 1)
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "-i", f, "inventory", "validate")
	if code != 0 || !strings.Contains(errOut, "warning: "+f+":28: datacenters[0].nodes[3].components: node \"n4\" has no components") {
		t.Errorf("text: exit %d, stderr:\n%s", code, errOut)
	}
	code, out, errOut := run(t, "-i", f, "inventory", "validate", "-o", "json")
	var v struct {
		Cluster  string `json:"cluster"`
		Warnings []struct {
			File, Message string
			Line          int
		} `json:"warnings"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Cluster != "edge-5" || len(v.Warnings) != 1 || v.Warnings[0].Line != 28 || v.Warnings[0].File != f {
		t.Errorf("json: exit %d %+v:\n%s\n%s", code, v, out, errOut)
	}
	code, out, _ = run(t, "-i", example("edge-5"), "inventory", "validate", "-o", "json")
	if code != 0 || !strings.Contains(out, `"warnings": []`) {
		t.Errorf("no warnings should be an empty array:\n%s", out)
	}
}
