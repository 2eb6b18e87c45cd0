package distribute

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// preflightFacts is what the preflight step printed.
type preflightFacts struct {
	rooted    bool
	date      string
	ssMissing bool
	listeners []listener
	os        osRelease
	cmds      map[string]string // command -> path ("" = missing)
	iptSvc    string
	consulOK  bool
	consulVer string
	firewalld string
	dirs      []dirFacts
	reach     map[string]reachResult // "addr:port" ->
}

type listener struct {
	proto   string
	port    int
	process string // first process name, "" when not visible
}

type osRelease struct{ id, version, pretty string }

type dirFacts struct {
	dir, parent string
	writable    bool
	freeKiB     int64 // -1 unknown
}

type reachResult struct{ result, msg string }

var ssProcess = regexp.MustCompile(`users:\(\("([^"]*)"`)

// parsePreflight reads the preflight step's output (unknown lines are
// ignored, so an older or newer step never breaks the parse).
func parsePreflight(out string) preflightFacts {
	f := preflightFacts{cmds: map[string]string{}, reach: map[string]reachResult{}}
	for _, line := range strings.Split(out, "\n") {
		key, rest, _ := strings.Cut(line, " ")
		fields := strings.Split(rest, "\t")
		at := func(i int) string {
			if i < len(fields) {
				return fields[i]
			}
			return ""
		}
		switch key {
		case "ROOTED":
			f.rooted = true
		case "DATE":
			f.date = strings.TrimSpace(rest)
		case "SSMISSING":
			f.ssMissing = true
		case "SS":
			if l, ok := parseSSLine(rest); ok {
				f.listeners = append(f.listeners, l)
			}
		case "OS":
			f.os = osRelease{at(0), at(1), at(2)}
		case "CMD":
			f.cmds[at(0)] = at(1)
		case "IPTSVC":
			f.iptSvc = strings.TrimSpace(rest)
		case "CONSUL":
			f.consulOK = at(0) == "1"
			f.consulVer = strings.TrimSpace(at(1))
		case "FIREWALLD":
			f.firewalld = strings.TrimSpace(rest)
		case "DIR":
			free, err := strconv.ParseInt(at(3), 10, 64)
			if err != nil {
				free = -1
			}
			f.dirs = append(f.dirs, dirFacts{dir: at(0), parent: at(1), writable: at(2) == "1", freeKiB: free})
		case "REACH":
			f.reach[at(0)+":"+at(1)] = reachResult{at(2), at(3)}
		}
	}
	return f
}

// parseSSLine reads one line of `ss -Hltnup`: netid, state, queues, local
// address:port, peer, process.
func parseSSLine(s string) (listener, bool) {
	fs := strings.Fields(s)
	if len(fs) < 5 {
		return listener{}, false
	}
	local := fs[4]
	i := strings.LastIndex(local, ":")
	if i < 0 {
		return listener{}, false
	}
	port, err := strconv.Atoi(local[i+1:])
	if err != nil {
		return listener{}, false
	}
	l := listener{proto: fs[0], port: port}
	if m := ssProcess.FindStringSubmatch(s); m != nil {
		l.process = m[1]
	}
	return l, true
}

// mtlsctlOwned reports whether a listening process is one mtlsctl runs
// itself: the Consul agent or a Connect proxy (`consul connect proxy`),
// also under a versioned binary name such as consul-1.6.2.
func mtlsctlOwned(process string) bool { return strings.HasPrefix(process, "consul") }

func judgePorts(node string, want []listenPort, f preflightFacts) Check {
	c := Check{Node: node, Check: CheckPorts, Verdict: Pass}
	if f.rooted {
		c.Reason = "a directory sandbox (MTLSCTL_ROOT): its ports are the host's, not checked"
		return c
	}
	if f.ssMissing {
		c.Verdict, c.Reason, c.Fix = Warn, "ss is not on the node's PATH: ports not checked", "install iproute (ss), or check the ports by hand"
		return c
	}
	var taken, ours []string
	var seen []int
	for _, w := range want {
		if slices.Contains(seen, w.port) {
			continue
		}
		seen = append(seen, w.port)
		var holders []string
		mine := false
		for _, l := range f.listeners {
			if l.port != w.port {
				continue
			}
			if mtlsctlOwned(l.process) {
				mine = true
				continue
			}
			h := l.process
			if h == "" {
				h = "a process the SSH user cannot see"
			}
			if !slices.Contains(holders, h) {
				holders = append(holders, h)
			}
		}
		switch {
		case len(holders) > 0:
			taken = append(taken, fmt.Sprintf("%d (%s) is held by %s", w.port, w.what, strings.Join(holders, ", ")))
		case mine:
			ours = append(ours, strconv.Itoa(w.port))
		}
	}
	if len(taken) > 0 {
		c.Verdict = Fail
		c.Reason = "port " + strings.Join(taken, "; ")
		c.Fix = "stop what holds the port (ss -ltnup shows it), or move the proxy range in the cluster file's ports: block"
		return c
	}
	c.Reason = fmt.Sprintf("%d port(s) free", len(seen)-len(ours))
	if len(ours) > 0 {
		c.Reason += fmt.Sprintf(", %d held by consul (mtlsctl's agent and proxies)", len(ours))
	}
	return c
}

// Clock skew limits: a leaf whose NotBefore is ahead of a node's clock is
// refused by that node's TLS, so a large skew breaks the mesh right after
// a rotation.
const (
	skewWarn = time.Second
	skewFail = 60 * time.Second
)

// judgeClock compares the node's clock, read between before and after on
// the admin clock, with the midpoint of the round trip.
func judgeClock(node, date string, before, after time.Time) Check {
	c := Check{Node: node, Check: CheckClock}
	secs, err := strconv.ParseFloat(date, 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
		c.Verdict, c.Reason, c.Fix = Warn, fmt.Sprintf("the node's `date +%%s.%%N` printed %q", date), "check the node's date command (GNU coreutils)"
		return c
	}
	mid := before.Add(after.Sub(before) / 2)
	node0 := time.Unix(0, 0).Add(time.Duration(secs * float64(time.Second)))
	skew := node0.Sub(mid)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	c.Reason = fmt.Sprintf("%s %s the admin machine (round trip %s)", abs.Round(time.Millisecond), dir, after.Sub(before).Round(time.Millisecond))
	switch {
	case abs > skewFail:
		c.Verdict = Fail
		c.Fix = "synchronise the clock (chronyd or ntpd on every node and on the admin machine): certificates valid from now are refused by a node behind"
	case abs > skewWarn:
		c.Verdict = Warn
		c.Fix = "synchronise the clock (chronyd or ntpd)"
	default:
		c.Verdict = Pass
	}
	return c
}

func judgeOS(node string, os osRelease, apigee string) Check {
	c := Check{Node: node, Check: CheckOS, Verdict: Pass}
	name := os.pretty
	if name == "" {
		name = strings.TrimSpace(os.id + " " + os.version)
	}
	if os.id == "" {
		c.Verdict, c.Reason = Warn, "no /etc/os-release: the OS is unknown"
		c.Fix = fmt.Sprintf("Apigee %s supports RHEL or Oracle Linux %s", apigee, strings.Join(supportedOS[apigee], ", "))
		return c
	}
	if (os.id == "rhel" || os.id == "ol") && slices.Contains(supportedOS[apigee], os.version) {
		c.Reason = fmt.Sprintf("%s is supported by Apigee %s", name, apigee)
		return c
	}
	c.Verdict = Warn
	c.Reason = fmt.Sprintf("%s is not in Apigee %s's support table", name, apigee)
	c.Fix = fmt.Sprintf("Apigee %s supports RHEL or Oracle Linux %s; other systems may work but are not supported", apigee, strings.Join(supportedOS[apigee], ", "))
	return c
}

func judgePackages(node string, f preflightFacts) Check {
	c := Check{Node: node, Check: CheckPackages, Verdict: Pass}
	var missing []string
	for _, cmd := range requiredCommands {
		if f.cmds[cmd] == "" {
			missing = append(missing, cmd)
		}
	}
	if len(missing) > 0 {
		c.Verdict = Fail
		c.Reason = "not on the node's PATH: " + strings.Join(missing, ", ")
		c.Fix = "install the packages that provide them (RHEL: yum install coreutils iptables iptables-services lsof nmap-ncat openssl)"
	}
	if f.iptSvc == "" {
		c.Verdict = worse(c.Verdict, Warn)
		msg := "no iptables.service unit (iptables-services) nor netfilter-persistent: rules are not restored at boot"
		if c.Reason != "" {
			c.Reason += "; " + msg
		} else {
			c.Reason = msg
		}
		if c.Fix == "" {
			c.Fix = "install iptables-services (RHEL) or iptables-persistent (Debian)"
		}
	}
	if c.Verdict == Pass {
		c.Reason = strings.Join(requiredCommands, ", ") + " found; iptables rules kept by " + f.iptSvc
	}
	return c
}

var consulVersionRE = regexp.MustCompile(`v(\d+\.\d+\.\d+)`)

func judgeConsul(node, binary, want string, f preflightFacts) Check {
	c := Check{Node: node, Check: CheckConsul, Verdict: Pass}
	if !f.consulOK {
		c.Verdict, c.Reason = Fail, binary+" is missing or not executable (mesh.consul_binary)"
		c.Fix = fmt.Sprintf("install Consul %s at %s, or set mesh.consul_binary to where it is", want, binary)
		return c
	}
	m := consulVersionRE.FindStringSubmatch(f.consulVer)
	if m == nil {
		c.Verdict, c.Reason = Fail, fmt.Sprintf("%s version printed %q", binary, f.consulVer)
		c.Fix = fmt.Sprintf("check that %s is a working Consul %s", binary, want)
		return c
	}
	if m[1] != strings.TrimPrefix(want, "v") {
		c.Verdict, c.Reason = Fail, fmt.Sprintf("%s is Consul %s, the cluster file says consul.version %s", binary, m[1], want)
		c.Fix = fmt.Sprintf("install Consul %s on the node, or set consul.version to %s", want, m[1])
		return c
	}
	c.Reason = fmt.Sprintf("%s is Consul %s", binary, m[1])
	return c
}

func judgeFirewalld(node string, f preflightFacts) Check {
	c := Check{Node: node, Check: CheckFirewalld, Verdict: Pass, Reason: "firewalld is not running"}
	if f.rooted {
		c.Reason = "a directory sandbox (MTLSCTL_ROOT): not checked"
		return c
	}
	if f.firewalld == "active" {
		c.Verdict, c.Reason = Fail, "firewalld is running: it replaces the iptables rules mtlsctl loads"
		c.Fix = "systemctl disable --now firewalld, then enable iptables (systemctl enable --now iptables), as Apigee's mTLS install requires"
	}
	return c
}

func judgeReach(node string, targets []reachTarget, got map[string]reachResult) Check {
	c := Check{Node: node, Check: CheckReach, Verdict: Pass}
	var bad []string
	var ports []string
	for _, t := range targets {
		key := t.addr + ":" + strconv.Itoa(t.port)
		r, ok := got[key]
		switch {
		case !ok:
			bad = append(bad, key+" ("+t.what+"): no result")
		case r.result == "open" || r.result == "refused":
		case r.result == "timeout":
			bad = append(bad, key+" ("+t.what+"): timed out, filtered by a firewall")
			ports = append(ports, strconv.Itoa(t.port))
		default:
			bad = append(bad, key+" ("+t.what+"): "+strings.TrimSpace(r.result+" "+r.msg))
			ports = append(ports, strconv.Itoa(t.port))
		}
	}
	if len(bad) > 0 {
		c.Verdict = Fail
		c.Reason = strings.Join(bad, "; ")
		c.Fix = fmt.Sprintf("allow TCP from %s to port(s) %s in every firewall between them (iptables, security groups)", node, strings.Join(uniq(ports), ", "))
		return c
	}
	c.Reason = fmt.Sprintf("%d address:port target(s) reachable (refused counts: the host answered)", len(targets))
	return c
}

func judgeDisk(node string, dirs []dirFacts) Check {
	c := Check{Node: node, Check: CheckDisk, Verdict: Pass}
	var bad, fixes []string
	for _, d := range dirs {
		switch {
		case !d.writable:
			bad = append(bad, fmt.Sprintf("%s: %s is not writable", d.dir, d.parent))
			fixes = append(fixes, "create "+d.dir+" writable by the SSH user, or set ssh.sudo")
		case d.freeKiB >= 0 && d.freeKiB < minFreeKiB:
			bad = append(bad, fmt.Sprintf("%s: %d KiB free on %s", d.dir, d.freeKiB, d.parent))
			fixes = append(fixes, fmt.Sprintf("free space on the file system of %s (at least %d MiB)", d.dir, minFreeKiB>>10))
		}
	}
	if len(bad) > 0 {
		c.Verdict, c.Reason, c.Fix = Fail, strings.Join(bad, "; "), strings.Join(uniq(fixes), "; ")
		return c
	}
	c.Reason = fmt.Sprintf("%d directories writable with space", len(dirs))
	return c
}

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
