package testnet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestOptionsNormalize(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		wantErr   string // substring; empty means success
		wantNames []string
		wantAddrs []string
		wantDirs  []string
	}{
		{
			name:      "defaults",
			wantNames: []string{"n1", "n2", "n3"},
			wantAddrs: []string{"198.18.0.11", "198.18.0.12", "198.18.0.13"},
			wantDirs:  []string{"/etc/consul.d", "/etc/mtlsctl", DefaultUnitDir, "/opt/consul", "/root", BinDir, "/var/lib/mtlsctl"},
		},
		{
			name:      "names win over count",
			opts:      Options{Nodes: 5, Names: []string{"zk1", "mp1"}},
			wantNames: []string{"zk1", "mp1"},
			wantAddrs: []string{"198.18.0.11", "198.18.0.12"},
		},
		{
			name:      "other subnet",
			opts:      Options{Nodes: 2, Subnet: "10.77.1.0/24"},
			wantAddrs: []string{"10.77.1.11", "10.77.1.12"},
		},
		{
			name:      "sudo user gets a private home",
			opts:      Options{SudoUser: true, PrivateDirs: []string{"/etc/x/"}},
			wantDirs:  []string{DefaultUnitDir, "/etc/x", "/home/mtlsuser", BinDir},
			wantNames: []string{"n1", "n2", "n3"},
		},
		{
			name:     "own unit dir",
			opts:     Options{PrivateDirs: []string{"/etc/x"}, UnitDir: "/etc/x/units/"},
			wantDirs: []string{"/etc/x", "/etc/x/units", BinDir},
		},
		{
			name:     "unit dir already private",
			opts:     Options{PrivateDirs: []string{"/etc/systemd/system"}},
			wantDirs: []string{DefaultUnitDir, BinDir},
		},
		{name: "negative count", opts: Options{Nodes: -1}, wantErr: "Nodes is -1"},
		{name: "duplicate name", opts: Options{Names: []string{"a", "b", "a"}}, wantErr: `"a" is used twice`},
		{name: "bad name", opts: Options{Names: []string{"a/b"}}, wantErr: `node name "a/b"`},
		{name: "prefix too long", opts: Options{Prefix: "abcdefghijk"}, wantErr: "Prefix"},
		{name: "prefix with dash", opts: Options{Prefix: "a-b"}, wantErr: "Prefix"},
		{name: "bad subnet", opts: Options{Subnet: "198.18.0.0"}, wantErr: "IPv4 prefix"},
		{name: "ipv6 subnet", opts: Options{Subnet: "fd00::/64"}, wantErr: "IPv4 prefix"},
		{name: "host bits", opts: Options{Subnet: "198.18.0.5/24"}, wantErr: "host bits"},
		{name: "too many nodes", opts: Options{Nodes: 245}, wantErr: "room for 244 nodes"},
		{name: "subnet too small", opts: Options{Nodes: 1, Subnet: "198.18.0.0/29"}, wantErr: "room for 0 nodes"},
		{name: "relative private dir", opts: Options{PrivateDirs: []string{"etc/x"}}, wantErr: "absolute"},
		{name: "root private dir", opts: Options{PrivateDirs: []string{"/"}}, wantErr: "absolute directory other than /"},
		{name: "reserved private dir", opts: Options{PrivateDirs: []string{BinDir}}, wantErr: "reserved"},
		{name: "relative unit dir", opts: Options{UnitDir: "units"}, wantErr: "UnitDir"},
		{name: "reserved unit dir", opts: Options{UnitDir: BinDir}, wantErr: "reserved"},
		{name: "empty service", opts: Options{Services: map[string]ServiceDef{"x": {}}}, wantErr: "Command is empty"},
		{name: "bad service name", opts: Options{Services: map[string]ServiceDef{"x.service": {Command: []string{"true"}}}}, wantErr: "without the .service suffix"},
		{name: "bad service env", opts: Options{Services: map[string]ServiceDef{"x": {Command: []string{"true"}, Env: []string{"NOEQUALS"}}}}, wantErr: "KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.opts.normalize("TestX")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if !errors.Is(err, ErrInvalidOptions) {
					t.Errorf("err = %v, want wrapping ErrInvalidOptions", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNames != nil && !slices.Equal(c.names, tc.wantNames) {
				t.Errorf("names = %v, want %v", c.names, tc.wantNames)
			}
			var addrs []string
			for _, a := range c.addrs {
				addrs = append(addrs, a.String())
			}
			if tc.wantAddrs != nil && !slices.Equal(addrs, tc.wantAddrs) {
				t.Errorf("addrs = %v, want %v", addrs, tc.wantAddrs)
			}
			if tc.wantDirs != nil && !slices.Equal(c.privateDirs, tc.wantDirs) {
				t.Errorf("privateDirs = %v, want %v", c.privateDirs, tc.wantDirs)
			}
			if len(hostLinkName(c.prefix)) > 15 {
				t.Errorf("interface name %q is longer than 15", hostLinkName(c.prefix))
			}
		})
	}
}

func TestDefaultPrefixStable(t *testing.T) {
	a, b := defaultPrefix("TestA"), defaultPrefix("TestA")
	if a != b || a == defaultPrefix("TestB") {
		t.Fatalf("defaultPrefix not stable per name or not distinct: %q %q %q", a, b, defaultPrefix("TestB"))
	}
	if !prefixRE.MatchString(a) || len(a) > maxPrefixLen {
		t.Fatalf("defaultPrefix %q is not a valid prefix", a)
	}
}

func TestOwnsNetns(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"tn1-br", true},
		{"tn1-1", true},
		{"tn1-50", true},
		{"tn1-", false},
		{"tn1-1x", false},
		{"tn1x-1", false},
		{"tn1-br-1", false},
		{"tn11-1", false},
		{"xtn1-1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ownsNetns("tn1", tc.name); got != tc.want {
				t.Errorf("ownsNetns(tn1, %q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

func TestNodePath(t *testing.T) {
	c, err := Options{PrivateDirs: []string{"/etc/consul.d", "/etc/consul.d/tls", "/opt/consul"}}.normalize("TestNodePath")
	if err != nil {
		t.Fatal(err)
	}
	nd := &Node{Name: "n1", Root: "/r/n1", net: &Net{cfg: c}}
	tests := []struct{ in, want string }{
		{"/etc/consul.d", "/r/n1/fs/etc/consul.d"},
		{"/etc/consul.d/x.json", "/r/n1/fs/etc/consul.d/x.json"},
		{"/etc/consul.d/tls/ca.pem", "/r/n1/fs/etc/consul.d/tls/ca.pem"},
		{"/etc/consul.d/../passwd", "/etc/passwd"},
		{"/etc/consul.dx", "/etc/consul.dx"},
		{"/opt/consul/data", "/r/n1/fs/opt/consul/data"},
		{BinDir + "/systemctl", "/r/n1/fs" + BinDir + "/systemctl"},
		{"/tmp/x", "/tmp/x"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := nd.Path(tc.in); got != tc.want {
				t.Errorf("Path(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestSystemctlScript checks the stand-in and a service run script are
// valid POSIX sh, and drives the stand-in outside any namespace.
func TestSystemctlScript(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid (util-linux)")
	}
	dir := t.TempDir()
	svc := filepath.Join(dir, "services")
	script := filepath.Join(dir, "systemctl")
	if err := os.WriteFile(script, []byte(systemctlScript("n1", svc, filepath.Join(dir, "units"))), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n systemctl: %v: %s", err, out)
	}
	if err := writeService(svc, "dummy", ServiceDef{Command: []string{"sleep", "300"}, Env: []string{"A=it's"}}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sh, "-n", filepath.Join(svc, "dummy", "run")).CombinedOutput(); err != nil {
		t.Fatalf("sh -n run: %v: %s", err, out)
	}
	run := func(args ...string) (string, int) {
		out, err := exec.Command(script, args...).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"unknown unit", []string{"status", "nosuch"}, 4, "could not be found"},
		{"no verb", nil, 2, "usage"},
		{"daemon-reload", []string{"daemon-reload"}, 0, ""},
		{"inactive", []string{"is-active", "dummy.service"}, 3, "inactive"},
		{"reload when stopped", []string{"reload", "dummy"}, 1, "not active"},
		{"start", []string{"start", "dummy"}, 0, ""},
		{"active", []string{"--quiet", "is-active", "dummy"}, 0, ""},
		{"status", []string{"status", "dummy", "--no-pager"}, 0, "active (running)"},
		{"stop", []string{"stop", "dummy"}, 0, ""},
		{"stop again", []string{"stop", "dummy"}, 0, ""},
		{"dead", []string{"status", "dummy"}, 3, "inactive (dead)"},
	}
	t.Cleanup(func() { run("stop", "dummy") })
	for _, tc := range tests {
		out, code := run(tc.args...)
		if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
			t.Errorf("%s: systemctl %v = %d %q, want %d containing %q", tc.name, tc.args, code, out, tc.wantCode, tc.wantOut)
		}
	}
}
