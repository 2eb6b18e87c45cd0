package testnet

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// unitDirName returns the stand-in's name for unit (NAME or NAME.service):
// NAME, or "" when it is not a plain unit name.
func unitDirName(unit string) string {
	name := strings.TrimSuffix(unit, ".service")
	if !serviceRE.MatchString(name) {
		return ""
	}
	return name
}

// UnitDir returns the node path where the systemctl stand-in looks for unit
// files (Options.UnitDir, private to each node).
func (n *Net) UnitDir() string { return n.cfg.unitDir }

// UnitFile returns the host path of the node's unit file for unit (NAME or
// NAME.service), inside the node's private copy of UnitDir; the file may not
// exist.
func (nd *Node) UnitFile(unit string) string {
	name := strings.TrimSuffix(unit, ".service")
	return nd.Path(path.Join(nd.net.cfg.unitDir, name+".service"))
}

// unitState returns the host path of one state file of unit, or "".
func (nd *Node) unitState(unit, file string) string {
	name := unitDirName(unit)
	if name == "" {
		return ""
	}
	return filepath.Join(nd.svcDir(), name, file)
}

// UnitPID returns the PID of the running process of unit (NAME or
// NAME.service; a unit file or one of Options.Services) and true, or false
// when the unit has no live process inside this node. A oneshot unit never
// has one.
func (nd *Node) UnitPID(unit string) (int, bool) {
	f := nd.unitState(unit, "pid")
	if f == "" {
		return 0, false
	}
	data, err := os.ReadFile(f)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !nd.alive(pid) {
		return 0, false
	}
	return pid, true
}

// alive reports whether pid is a live (not zombie) process in the node's
// network namespace, which guards against a recycled PID.
func (nd *Node) alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	var want, got syscall.Stat_t
	if syscall.Stat(filepath.Join(netnsDir, nd.NS), &want) != nil ||
		syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &got) != nil {
		return false
	}
	return want.Dev == got.Dev && want.Ino == got.Ino
}

// UnitActive reports whether "systemctl is-active unit" would answer
// active: its process runs, or it is a oneshot unit with RemainAfterExit=yes
// that succeeded and was not stopped since.
func (nd *Node) UnitActive(unit string) bool {
	if _, ok := nd.UnitPID(unit); ok {
		return true
	}
	f := nd.unitState(unit, "active")
	if f == "" {
		return false
	}
	_, err := os.Stat(f)
	return err == nil
}

// UnitEnabled reports whether "systemctl is-enabled unit" would answer
// enabled: a unit file enabled with "systemctl enable" and not disabled
// since, or one of Options.Services not disabled.
func (nd *Node) UnitEnabled(unit string) bool {
	name := unitDirName(unit)
	if name == "" {
		return false
	}
	dir := filepath.Join(nd.svcDir(), name)
	if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
		_, err := os.Stat(filepath.Join(dir, "disabled"))
		return err != nil
	}
	_, err := os.Stat(filepath.Join(dir, "enabled"))
	return err == nil
}

// DaemonReloads returns how many times "systemctl daemon-reload" ran in the
// node.
func (nd *Node) DaemonReloads() int {
	data, err := os.ReadFile(filepath.Join(nd.svcDir(), ".daemon-reloads"))
	if err != nil {
		return 0
	}
	return bytes.Count(data, []byte{'\n'})
}

// SystemctlCalls returns the arguments of every systemctl call made in the
// node so far, oldest first, each joined by single spaces (for example
// "enable --now mtlsctl-firewall.service").
func (nd *Node) SystemctlCalls() []string {
	data, err := os.ReadFile(filepath.Join(nd.svcDir(), ".calls"))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}
