package testnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const netnsDir = "/run/netns"

// ErrNotPermitted is wrapped when the kernel refuses to create a network
// namespace (an unprivileged container, for example); New skips then.
var ErrNotPermitted = errors.New("testnet: creating network namespaces is not permitted here")

// ErrSubnetInUse is wrapped when the subnet is already configured in the root
// namespace, typically by another Net running at the same time.
var ErrSubnetInUse = errors.New("testnet: subnet already in use")

// ipBatch runs "ip [-n ns] -batch -" with the given commands, one per line;
// one process for many commands keeps setup of 50 nodes fast.
func ipBatch(ns string, cmds []string) error {
	if len(cmds) == 0 {
		return nil
	}
	var args []string
	if ns != "" {
		args = append(args, "-n", ns)
	}
	args = append(args, "-batch", "-")
	c := exec.Command("ip", args...)
	c.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	out, err := c.CombinedOutput()
	if err != nil {
		where := "root namespace"
		if ns != "" {
			where = "namespace " + ns
		}
		return fmt.Errorf("ip -batch in %s: %w: %s", where, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// addNetns creates one namespace, mapping a refusal by the kernel to
// ErrNotPermitted.
func addNetns(name string) error {
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "not permitted") || strings.Contains(msg, "Permission denied") {
			return fmt.Errorf("%w: ip netns add %s: %s", ErrNotPermitted, name, msg)
		}
		return fmt.Errorf("ip netns add %s: %w: %s", name, err, msg)
	}
	return nil
}

// ownsNetns reports whether a namespace name belongs to prefix: exactly
// "<prefix>-br" or "<prefix>-<digits>".
func ownsNetns(prefix, name string) bool {
	rest, ok := strings.CutPrefix(name, prefix+"-")
	if !ok {
		return false
	}
	if rest == "br" {
		return true
	}
	if rest == "" {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// listOwnedNetns lists the namespaces named for prefix.
func listOwnedNetns(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if ownsNetns(prefix, e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// pidsInNetns lists the processes whose network namespace is the named one,
// by comparing namespace inodes as "ip netns pids" does. Processes we may not
// inspect cannot be in our namespaces and are skipped.
func pidsInNetns(name string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netnsDir, name), &want); err != nil {
		return nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killNetnsProcs SIGKILLs every process left in the namespace and waits
// (bounded) until none is left. It is how processes started inside a node by
// someone else (an sshd session, the systemctl stand-in) are reaped: they are
// identified by the namespace the harness created, never by name.
func killNetnsProcs(name string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := pidsInNetns(name)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: processes %v still running after SIGKILL", name, pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeNetworks deletes the namespaces named for prefix (after killing what
// runs in them) and the root-side interface. Missing pieces are fine.
func removeNetworks(prefix string) error {
	names, err := listOwnedNetns(prefix)
	if err != nil {
		return err
	}
	var errs []error
	var mu sync.Mutex
	forEach(len(names), func(i int) error {
		if err := killNetnsProcs(names[i]); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return nil
	})
	cmds := make([]string, 0, len(names))
	for _, n := range names {
		cmds = append(cmds, "netns del "+n)
	}
	if err := ipBatch("", cmds); err != nil {
		errs = append(errs, err)
	}
	// Deleting <prefix>-br destroys the peer and with it the root side; this
	// covers a run that crashed before the bridge namespace existed.
	link := hostLinkName(prefix)
	if _, err := net.InterfaceByName(link); err == nil {
		if out, err := exec.Command("ip", "link", "del", link).CombinedOutput(); err != nil {
			if _, still := net.InterfaceByName(link); still == nil {
				errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", link, err, bytes.TrimSpace(out)))
			}
		}
	}
	return errors.Join(errs...)
}

func hostLinkName(prefix string) string { return prefix + "-h" }

// checkSubnetFree fails when an interface in the root namespace already has an
// address inside subnet.
func checkSubnetFree(subnet netip.Prefix) error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if ok && subnet.Contains(ip.Unmap()) {
				return fmt.Errorf("%w: %s already has %s; another testnet may be running: give each concurrent Net its own Options.Subnet", ErrSubnetInUse, ifc.Name, ipn)
			}
		}
	}
	return nil
}

// forEach runs f(0..n-1) with bounded parallelism and joins the errors.
func forEach(n int, f func(i int) error) error {
	const limit = 16
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
