package distribute

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

func TestJudgePorts(t *testing.T) {
	want := []listenPort{{8500, "Consul"}, {10001, "zookeeper proxy"}}
	ss := func(lines ...string) preflightFacts {
		return parsePreflight("SS " + strings.Join(lines, "\nSS ") + "\n")
	}
	for _, tc := range []struct {
		name   string
		facts  preflightFacts
		want   Verdict
		reason string
	}{
		{"free", ss(`tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:(("sshd",pid=1,fd=3))`), Pass, "2 port(s) free"},
		{"held by consul", ss(`tcp LISTEN 0 4096 127.0.0.1:8500 0.0.0.0:* users:(("consul",pid=7,fd=8))`,
			`tcp LISTEN 0 4096 [::]:10001 [::]:* users:(("consul-1.6.2",pid=9,fd=3))`), Pass, "2 held by consul"},
		{"held by another", ss(`tcp LISTEN 0 4096 *:10001 *:* users:(("java",pid=7,fd=8))`), Fail, "10001 (zookeeper proxy) is held by java"},
		{"udp, process hidden", ss(`udp UNCONN 0 0 127.0.0.1:8500 0.0.0.0:*`), Fail, "a process the SSH user cannot see"},
		{"no ss", parsePreflight("SSMISSING\n"), Warn, "ss is not"},
		{"sandbox", parsePreflight("ROOTED\nSS tcp LISTEN 0 1 *:8500 *:* users:((\"x\",pid=1,fd=1))\n"), Pass, "sandbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := judgePorts("n1", want, tc.facts)
			if c.Verdict != tc.want || !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("judgePorts = %s %q, want %s containing %q", c.Verdict, c.Reason, tc.want, tc.reason)
			}
			if c.Verdict != Pass && c.Fix == "" {
				t.Error("no fix")
			}
		})
	}
}

func unixText(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

func TestJudgeClock(t *testing.T) {
	before := time.Unix(1_700_000_000, 0)
	after := before.Add(200 * time.Millisecond) // the midpoint is +100 ms
	at := func(d time.Duration) string { return unixText(before.Add(100 * time.Millisecond).Add(d)) }
	for _, tc := range []struct {
		name string
		date string
		want Verdict
	}{
		{"in step", at(0), Pass},
		{"half a second ahead", at(500 * time.Millisecond), Pass},
		{"two seconds behind", at(-2 * time.Second), Warn},
		{"a minute and a half ahead", at(90 * time.Second), Fail},
		{"an hour behind", at(-time.Hour), Fail},
		{"no %N", "%s.%N", Warn},
		{"empty", "", Warn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := judgeClock("n1", tc.date, before, after)
			if c.Verdict != tc.want {
				t.Errorf("judgeClock(%q) = %s (%s), want %s", tc.date, c.Verdict, c.Reason, tc.want)
			}
		})
	}
}

func TestJudgeOS(t *testing.T) {
	for _, tc := range []struct {
		os     osRelease
		apigee string
		want   Verdict
	}{
		{osRelease{"rhel", "7.7", "RHEL 7.7"}, "4.19.06", Pass},
		{osRelease{"rhel", "7.9", "RHEL 7.9"}, "4.19.06", Warn},
		{osRelease{"ol", "7.9", "Oracle Linux 7.9"}, "4.50.00", Pass},
		{osRelease{"ol", "8.0", ""}, "4.50.00", Warn},
		{osRelease{"rhel", "8.0", ""}, "4.51.00", Pass},
		{osRelease{"rhel", "8.4", ""}, "4.51.00", Warn},
		{osRelease{"debian", "12", "Debian GNU/Linux 12 (bookworm)"}, "4.51.00", Warn},
		{osRelease{}, "4.51.00", Warn},
	} {
		t.Run(tc.os.id+tc.os.version+"/"+tc.apigee, func(t *testing.T) {
			if c := judgeOS("n1", tc.os, tc.apigee); c.Verdict != tc.want {
				t.Errorf("judgeOS = %s (%s), want %s", c.Verdict, c.Reason, tc.want)
			}
		})
	}
}

func TestJudgeFacts(t *testing.T) {
	all := "CMD base64\t/usr/bin/base64\nCMD iptables\t/usr/sbin/iptables\nCMD lsof\t/usr/bin/lsof\nCMD nc\t/usr/bin/nc\nCMD openssl\t/usr/bin/openssl\n"
	for _, tc := range []struct {
		name   string
		judge  func(preflightFacts) Check
		out    string
		want   Verdict
		reason string
	}{
		{"packages all", func(f preflightFacts) Check { return judgePackages("n1", f) }, all + "IPTSVC iptables.service (/usr/lib/systemd/system/iptables.service)\n", Pass, "found"},
		{"packages no service", func(f preflightFacts) Check { return judgePackages("n1", f) }, all + "IPTSVC \n", Warn, "iptables-services"},
		{"packages missing nc", func(f preflightFacts) Check { return judgePackages("n1", f) },
			strings.Replace(all, "/usr/bin/nc", "", 1) + "IPTSVC netfilter-persistent\n", Fail, "not on the node's PATH: nc"},
		{"consul match", func(f preflightFacts) Check { return judgeConsul("n1", "/usr/bin/consul", "1.6.2", f) }, "CONSUL 1\tConsul v1.6.2\n", Pass, "Consul 1.6.2"},
		{"consul other", func(f preflightFacts) Check { return judgeConsul("n1", "/usr/bin/consul", "1.6.2", f) }, "CONSUL 1\tConsul v1.15.4\n", Fail, "says consul.version 1.6.2"},
		{"consul missing", func(f preflightFacts) Check { return judgeConsul("n1", "/usr/bin/consul", "1.6.2", f) }, "CONSUL 0\t\n", Fail, "missing"},
		{"consul garbage", func(f preflightFacts) Check { return judgeConsul("n1", "/usr/bin/consul", "1.6.2", f) }, "CONSUL 1\tsegfault\n", Fail, "printed"},
		{"firewalld off", func(f preflightFacts) Check { return judgeFirewalld("n1", f) }, "FIREWALLD none\n", Pass, "not running"},
		{"firewalld on", func(f preflightFacts) Check { return judgeFirewalld("n1", f) }, "FIREWALLD active\n", Fail, "firewalld is running"},
		{"disk ok", func(f preflightFacts) Check { return judgeDisk("n1", f.dirs) }, "DIR /etc/consul.d\t/etc\t1\t100000\n", Pass, "1 directories"},
		{"disk read-only", func(f preflightFacts) Check { return judgeDisk("n1", f.dirs) }, "DIR /etc/consul.d\t/etc\t0\t100000\n", Fail, "/etc is not writable"},
		{"disk full", func(f preflightFacts) Check { return judgeDisk("n1", f.dirs) }, "DIR /opt/consul\t/opt\t1\t1024\n", Fail, "1024 KiB free"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.judge(parsePreflight(tc.out))
			if c.Verdict != tc.want || !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("got %s %q, want %s containing %q", c.Verdict, c.Reason, tc.want, tc.reason)
			}
			if c.Verdict != Pass && c.Fix == "" {
				t.Error("no fix")
			}
		})
	}
}

func TestJudgeReach(t *testing.T) {
	targets := []reachTarget{{"10.0.0.1", 8300, "Consul server a"}, {"10.0.0.1", 10001, "zookeeper proxy on a"}}
	for _, tc := range []struct {
		name   string
		out    string
		want   Verdict
		reason string
	}{
		{"open and refused", "REACH 10.0.0.1\t8300\topen\t\nREACH 10.0.0.1\t10001\trefused\t\n", Pass, "2 address:port"},
		{"timeout", "REACH 10.0.0.1\t8300\topen\t\nREACH 10.0.0.1\t10001\ttimeout\t\n", Fail, "10.0.0.1:10001 (zookeeper proxy on a): timed out"},
		{"no route", "REACH 10.0.0.1\t8300\terror\tNo route to host\nREACH 10.0.0.1\t10001\topen\t\n", Fail, "No route to host"},
		{"missing", "REACH 10.0.0.1\t8300\topen\t\n", Fail, "no result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := judgeReach("n2", targets, parsePreflight(tc.out).reach)
			if c.Verdict != tc.want || !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("got %s %q, want %s containing %q", c.Verdict, c.Reason, tc.want, tc.reason)
			}
			if c.Verdict == Fail && !strings.Contains(c.Fix, "port(s)") {
				t.Errorf("fix %q names no port", c.Fix)
			}
		})
	}
}

// Against sandbox nodes (a real sh, the node a directory): the full
// preflight runs both steps and judges them; a stand-in consul of the
// wrong version and a skewed stand-in date get their verdicts.
func TestPreflightSandbox(t *testing.T) {
	f := newFixture(t, nodeSpec{name: "a", server: true}, nodeSpec{name: "b"})
	f.topo.Cluster.Consul.Version = "1.6.2"
	f.topo.Cluster.Consul.DataDir = "/opt/consul"
	f.topo.Cluster.Mesh = inventory.Mesh{ConsulBinary: "/usr/bin/consul"}
	for name, ver := range map[string]string{"a": "1.6.2", "b": "1.9.0"} {
		bin := f.servers[name].Path("/usr/bin/consul")
		os.MkdirAll(filepath.Dir(bin), 0o755)
		if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'Consul v"+ver+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// b's clock is two minutes ahead.
	skewed := filepath.Join(filepath.Dir(f.servers["b"].Root()), "bin", "date")
	if err := os.WriteFile(skewed, []byte("#!/bin/sh\necho $(( $(/bin/date +%s) + 120 )).000000000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(f.topo, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Preflight(context.Background(), nil, PreflightOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Check{}
	for _, c := range res.Checks {
		got[c.Node+"/"+c.Check] = c
	}
	if len(res.Checks) != 2*len(PreflightChecks) {
		t.Fatalf("%d checks, want %d: %+v", len(res.Checks), 2*len(PreflightChecks), res.Checks)
	}
	for key, want := range map[string]Verdict{
		"a/consul": Pass, "b/consul": Fail, "a/clock": Pass, "b/clock": Fail,
		"a/ports": Pass, "a/firewalld": Pass, "a/disk": Pass, "a/os": Warn,
	} {
		if got[key].Verdict != want && !(key == "a/os" && got[key].Verdict == Pass) {
			t.Errorf("%s = %s (%s), want %s", key, got[key].Verdict, got[key].Reason, want)
		}
	}
	if !res.Failed() {
		t.Error("Failed() = false with fails")
	}
	cheap, err := s.Preflight(context.Background(), nil, PreflightOptions{Cheap: true})
	if err != nil || len(cheap.Checks) != 2*len(CheapChecks) {
		t.Fatalf("cheap preflight = %+v, %v", cheap, err)
	}
	if _, err := s.Preflight(context.Background(), nil, PreflightOptions{ApigeeVersion: "4.18"}); err == nil || !strings.Contains(err.Error(), "4.51.00") {
		t.Errorf("unknown Apigee version: err = %v", err)
	}
}
