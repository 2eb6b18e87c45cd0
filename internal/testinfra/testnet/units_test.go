package testnet

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// procStatus returns the value of one field of /proc/<pid>/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("pid %d: no %s in status", pid, field)
	return ""
}

// TestUnits drives unit files through real sshd nodes, as mtlsctl will: a
// proxy-like unit running as a user and a oneshot firewall unit that loads
// iptables rules, written over ssh into the node's private unit dir.
func TestUnits(t *testing.T) {
	n := New(t, Options{Nodes: 2})
	n1, n2 := n.Nodes()[0], n.Nodes()[1]
	const proxy = "mtlsctl-proxy-zk-2181-198-18-0-11"
	unit := `[Unit]
Description=mtlsctl proxy zk
After=network-online.target consul.service mtlsctl-firewall.service
Wants=network-online.target

[Service]
User=nobody
ExecStart=/bin/sleep 300
Restart=always
RestartSec=2
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target
`
	mustSSH(t, n, n1, "root", "cat > "+n.UnitDir()+"/"+proxy+".service <<'EOF'\n"+unit+"EOF")

	t.Run("unit dir is private", func(t *testing.T) {
		if got, err := os.ReadFile(n1.UnitFile(proxy)); err != nil || string(got) != unit {
			t.Errorf("unit file on the host at %s: %q, %v", n1.UnitFile(proxy), got, err)
		}
		if _, err := os.Stat(DefaultUnitDir + "/" + proxy + ".service"); err == nil {
			t.Errorf("the unit file reached the host's %s", DefaultUnitDir)
		}
		if out, err := sshRun(t, n, n2, "root", "systemctl start "+proxy); exitStatus(err) != 5 {
			t.Errorf("node 2 starts node 1's unit: %q, %v", out, err)
		}
	})

	var pid int
	t.Run("enable --now runs as User", func(t *testing.T) {
		mustSSH(t, n, n1, "root", "systemctl daemon-reload && systemctl enable --now "+proxy+".service")
		if got := n1.DaemonReloads(); got != 1 {
			t.Errorf("DaemonReloads = %d, want 1", got)
		}
		if got := n2.DaemonReloads(); got != 0 {
			t.Errorf("node 2 DaemonReloads = %d, want 0", got)
		}
		if !n1.UnitEnabled(proxy) || !n1.UnitActive(proxy+".service") {
			t.Errorf("UnitEnabled %v, UnitActive %v; want both", n1.UnitEnabled(proxy), n1.UnitActive(proxy))
		}
		if got := mustSSH(t, n, n1, "root", "systemctl is-enabled "+proxy+"; systemctl is-active "+proxy); got != "enabled\nactive" {
			t.Errorf("is-enabled, is-active = %q", got)
		}
		var ok bool
		pid, ok = n1.UnitPID(proxy)
		if !ok {
			t.Fatalf("UnitPID: not running; log:\n%s", readFile(n1.ServiceLogFile(proxy)))
		}
		if !slices.Contains(pidsInNetns(n1.NS), pid) {
			t.Errorf("pid %d is not in %s", pid, n1.NS)
		}
		if uid := procStatus(t, pid, "Uid"); uid != "65534\t65534\t65534\t65534" {
			t.Errorf("Uid = %q, want nobody (65534)", uid)
		}
		if nnp := procStatus(t, pid, "NoNewPrivs"); nnp != "1" {
			t.Errorf("NoNewPrivs = %q, want 1", nnp)
		}
		if _, ok := n2.UnitPID(proxy); ok {
			t.Error("UnitPID on node 2 found node 1's process")
		}
	})

	t.Run("restart gives a new PID", func(t *testing.T) {
		mustSSH(t, n, n1, "root", "systemctl restart "+proxy)
		again, ok := n1.UnitPID(proxy)
		if !ok || again == pid {
			t.Fatalf("after restart: pid %d, running %v; before %d", again, ok, pid)
		}
		if processAlive(pid) {
			t.Errorf("old pid %d still alive", pid)
		}
		pid = again
	})

	t.Run("oneshot firewall unit loads iptables rules", func(t *testing.T) {
		rules := "*nat\n:MTLSCTL-EGRESS - [0:0]\n-A MTLSCTL-EGRESS -d " + n2.Addr + "/32 -p tcp -m tcp --dport 2181 -m comment --comment zk -j DNAT --to-destination 127.77.0.1:10700\nCOMMIT\n"
		script := `set -e
case $1 in
load)
	iptables-restore --noflush < /var/lib/mtlsctl/firewall.rules
	iptables -t nat -C OUTPUT -j MTLSCTL-EGRESS 2>/dev/null || iptables -t nat -I OUTPUT 1 -j MTLSCTL-EGRESS ;;
*) echo "usage: firewall.sh load" >&2; exit 2 ;;
esac
`
		fw := "[Unit]\nDescription=mtlsctl firewall\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh /var/lib/mtlsctl/firewall.sh load\n[Install]\nWantedBy=multi-user.target\n"
		for name, content := range map[string]string{
			"/var/lib/mtlsctl/firewall.rules":         rules,
			"/var/lib/mtlsctl/firewall.sh":            script,
			n.UnitDir() + "/mtlsctl-firewall.service": fw,
		} {
			if err := os.WriteFile(n1.Path(name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mustSSH(t, n, n1, "root", "systemctl daemon-reload && systemctl enable --now mtlsctl-firewall")
		if !n1.UnitActive("mtlsctl-firewall") || !n1.UnitEnabled("mtlsctl-firewall.service") {
			t.Errorf("firewall unit: active %v, enabled %v", n1.UnitActive("mtlsctl-firewall"), n1.UnitEnabled("mtlsctl-firewall"))
		}
		if _, ok := n1.UnitPID("mtlsctl-firewall"); ok {
			t.Error("a oneshot unit has a PID")
		}
		// Restarting reloads; the jump stays single.
		mustSSH(t, n, n1, "root", "systemctl restart mtlsctl-firewall")
		out, err := n1.Exec(t.Context(), "iptables", "-t", "nat", "-S", "OUTPUT")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(string(out), "-j MTLSCTL-EGRESS"); got != 1 {
			t.Errorf("nat OUTPUT has %d jumps to MTLSCTL-EGRESS, want 1:\n%s", got, out)
		}
		if got := mustSSH(t, n, n1, "root", "iptables-save -t nat"); !strings.Contains(got, "--to-destination 127.77.0.1:10700") {
			t.Errorf("iptables-save over ssh lacks the DNAT rule:\n%s", got)
		}
		if out, err := n2.Exec(t.Context(), "iptables-save"); err != nil || strings.Contains(string(out), "MTLSCTL") {
			t.Errorf("node 2 sees node 1's rules (err %v):\n%s", err, out)
		}
		if out, err := exec.Command("iptables-save").CombinedOutput(); err == nil && strings.Contains(string(out), "MTLSCTL-EGRESS") {
			t.Errorf("the host's rules contain MTLSCTL-EGRESS:\n%s", out)
		}
		mustSSH(t, n, n1, "root", "systemctl stop mtlsctl-firewall")
		if n1.UnitActive("mtlsctl-firewall") {
			t.Error("firewall unit active after stop")
		}
	})

	t.Run("stop, and stop after the file is gone", func(t *testing.T) {
		mustSSH(t, n, n1, "root", "systemctl stop "+proxy)
		if _, ok := n1.UnitPID(proxy); ok || processAlive(pid) {
			t.Errorf("pid %d alive after stop", pid)
		}
		mustSSH(t, n, n1, "root", "systemctl start "+proxy)
		pid, _ = n1.UnitPID(proxy)
		mustSSH(t, n, n1, "root", "rm "+n.UnitDir()+"/"+proxy+".service && systemctl daemon-reload")
		mustSSH(t, n, n1, "root", "systemctl stop "+proxy+" && systemctl disable "+proxy)
		if processAlive(pid) || n1.UnitEnabled(proxy) || n1.UnitActive(proxy) {
			t.Errorf("deleted unit: pid %d alive %v, enabled %v, active %v", pid, processAlive(pid), n1.UnitEnabled(proxy), n1.UnitActive(proxy))
		}
		if got := n1.DaemonReloads(); got != 3 {
			t.Errorf("DaemonReloads = %d, want 3", got)
		}
		calls := n1.SystemctlCalls()
		if len(calls) < 2 || calls[len(calls)-2] != "stop "+proxy || calls[len(calls)-1] != "disable "+proxy {
			t.Errorf("SystemctlCalls ends with %q", calls[max(len(calls)-2, 0):])
		}
	})
}

func readFile(name string) string {
	data, _ := os.ReadFile(name)
	return string(data)
}
