package consulcfg

import (
	"bytes"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func firewallOf(t *testing.T, in Input, node string) string {
	t.Helper()
	b, err := RenderNode(in, node)
	if err != nil {
		t.Fatal(err)
	}
	return string(b.File("/var/lib/mtlsctl/firewall.rules").Content)
}

func TestFirewall(t *testing.T) {
	in := fiveNode(t)
	in.Topology.Nodes[4].Address = "fd00::15" // an IPv6 member cannot be in IPv4 rules
	tests := []struct {
		node        string
		has, hasNot []string
	}{
		{"n1", []string{
			"--dport 8300 ", "-p udp -m udp --dport 8301 ", "-p tcp -m tcp --dport 8302 ", "-p udp -m udp --dport 8302 ",
			"--dport 8502 ", "--dport 8503 ", "-p udp -m udp --dport 8600 ", "--dport 10001 ", "--dport 10200 ", "--dport 10700 ",
		}, []string{"--dport 8500 ", "--dport 10004 "}},
		{"n4", []string{"-p tcp -m tcp --dport 8301 ", "-p udp -m udp --dport 8301 ", "--dport 10300 ", "--dport 10400 ", "--dport 10703 "},
			[]string{"--dport 8300 ", "--dport 8302 ", "--dport 8502 ", "--dport 8503 ", "--dport 8600 "}},
	}
	for _, tc := range tests {
		t.Run(tc.node, func(t *testing.T) {
			fw := firewallOf(t, in, tc.node)
			for _, s := range append(tc.has,
				"*filter\n:MTLSCTL-INPUT - [0:0]\n:MTLSCTL-MEMBERS - [0:0]\n",
				"-A MTLSCTL-INPUT -i lo -j ACCEPT\n",
				"-A MTLSCTL-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
				"-A MTLSCTL-MEMBERS -s 10.0.0.14/32 -j ACCEPT\n",
				"-A MTLSCTL-MEMBERS -j DROP\n",
				"# n5: fd00::15 is not an IPv4 address",
				"iptables-restore --noflush",
			) {
				if !strings.Contains(fw, s) {
					t.Errorf("rules lack %q", s)
				}
			}
			for _, s := range tc.hasNot {
				if strings.Contains(fw, s) {
					t.Errorf("rules have %q", s)
				}
			}
			if !strings.HasSuffix(fw, "\nCOMMIT\n") {
				t.Error("rules do not end with COMMIT")
			}
			for _, line := range strings.Split(strings.TrimSpace(fw), "\n") {
				switch {
				case strings.HasPrefix(line, "#"), line == "*filter", line == "COMMIT",
					line == ":MTLSCTL-INPUT - [0:0]", line == ":MTLSCTL-MEMBERS - [0:0]",
					strings.HasPrefix(line, "-A MTLSCTL-INPUT "), strings.HasPrefix(line, "-A MTLSCTL-MEMBERS "):
				default:
					t.Errorf("line touches more than mtlsctl's chains: %q", line)
				}
				if strings.Contains(line, "fd00::15/") {
					t.Errorf("IPv6 address in IPv4 rules: %q", line)
				}
			}
		})
	}
}

func TestFirewallTemplateNode(t *testing.T) {
	fw := firewallOf(t, twoDC(t), "n1")
	if !strings.Contains(fw, "# m4: address is a go-sockaddr template") {
		t.Errorf("no note about the template node:\n%s", fw)
	}
	if strings.Contains(fw, "{{") && !strings.Contains(fw, "# m4:") {
		t.Error("template in a rule")
	}
	var want []netip.Addr
	for _, n := range twoDC(t).Topology.Nodes {
		if a, err := netip.ParseAddr(n.Address); err == nil {
			want = append(want, a)
		}
	}
	if len(want) != 7 {
		t.Fatalf("twoDC has %d literal addresses, want 7", len(want))
	}
	checkMembers(t, fw, want)
}

// checkMembers checks that the member rules of a rules file admit exactly
// the addresses want: each one, and no other.
func checkMembers(t *testing.T, fw string, want []netip.Addr) {
	t.Helper()
	var prefixes []netip.Prefix
	for _, line := range strings.Split(fw, "\n") {
		rest, ok := strings.CutPrefix(line, "-A MTLSCTL-MEMBERS -s ")
		if !ok {
			continue
		}
		src, _, _ := strings.Cut(rest, " ")
		p, err := netip.ParsePrefix(src)
		if err != nil {
			t.Fatalf("member rule %q: %v", line, err)
		}
		prefixes = append(prefixes, p)
	}
	total := 0
	for _, p := range prefixes {
		total += 1 << (32 - p.Bits())
	}
	set := map[netip.Addr]bool{}
	for _, a := range want {
		set[a] = true
		if !slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) }) {
			t.Errorf("member %v is not admitted", a)
		}
	}
	if total != len(set) { // every member admitted, so any surplus is a stranger
		t.Errorf("the member rules admit %d addresses, want exactly the %d members: %v", total, len(set), prefixes)
	}
}

// TestFirewallRestoreSyntax has iptables-restore parse every rendered rules
// file (--test: parse and build, never commit). It skips where
// iptables-restore is missing or cannot run (it needs root).
func TestFirewallRestoreSyntax(t *testing.T) {
	bin, err := exec.LookPath("iptables-restore")
	if err != nil {
		t.Skip("iptables-restore not installed")
	}
	check := func(rules []byte) ([]byte, error) {
		cmd := exec.Command(bin, "--test", "--noflush")
		cmd.Stdin = bytes.NewReader(rules)
		return cmd.CombinedOutput()
	}
	if out, err := check([]byte("*filter\n:MTLSCTL-PROBE - [0:0]\nCOMMIT\n")); err != nil {
		t.Skipf("iptables-restore --test cannot run here: %v %s", err, out)
	}
	if _, err := check([]byte("*filter\n:MTLSCTL-PROBE - [0:0]\n-A MTLSCTL-PROBE --dport 1 -j ACCEPT\nCOMMIT\n")); err == nil {
		t.Skip("iptables-restore --test does not parse rules here")
	}
	for _, tc := range goldenCases {
		bundles, err := Render(tc.input(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bundles {
			if out, err := check(b.File("/var/lib/mtlsctl/firewall.rules").Content); err != nil {
				t.Errorf("%s/%s: iptables-restore: %v\n%s", tc.name, b.Node, err, out)
			}
		}
	}
}
