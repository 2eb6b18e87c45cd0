package inventory

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"unicode"
	"unicode/utf8"

	sockaddr "github.com/hashicorp/go-sockaddr"
	sockaddrtemplate "github.com/hashicorp/go-sockaddr/template"
)

// Validate applies the defaults to c (in place) and checks it, returning the
// Topology or a *ValidationError listing every problem. Use it for a Cluster
// built in code; Load and Parse call it for files.
//
// c.Mesh.Enabled is taken as given: a Cluster built in code has the mesh
// off unless it sets Enabled (a file that says nothing has it on).
func Validate(c *Cluster) (*Topology, error) {
	if c == nil {
		return nil, &ValidationError{Problems: []Problem{{Msg: "no cluster"}}}
	}
	return validate(c, newProblems(c.Source))
}

// labelRE is a DNS label: names go into certificate SANs (N.server.DC.DOMAIN).
var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// semverRE is MAJOR.MINOR.PATCH with an optional pre-release or build suffix.
var semverRE = regexp.MustCompile(`^v?(\d{1,9})\.(\d{1,9})\.(\d{1,9})(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

var logLevels = []string{"TRACE", "DEBUG", "INFO", "WARN", "ERR", "ERROR"}

func checkLabel(what, s string) string {
	switch {
	case s == "":
		return fmt.Sprintf("%s is missing", what)
	case len(s) > 63:
		return fmt.Sprintf("%s %q is longer than 63 characters (it goes into certificate names): shorten it", what, s)
	case !labelRE.MatchString(s):
		return fmt.Sprintf("%s %q must be a DNS label (it goes into certificate names): lowercase letters, digits and '-', not starting or ending with '-'", what, s)
	}
	return ""
}

func validate(c *Cluster, ps *problems) (*Topology, error) {
	applyDefaults(c)
	if msg := checkLabel("cluster name", c.Name); msg != "" {
		ps.add("cluster", "%s", msg)
	}
	validateConsul(c, ps)
	validateSSH(c, ps)
	validateSandbox(c, ps)
	validateMesh(c, ps)
	checkNodePath(ps, "acl.token_dir", c.ACL.TokenDir)
	if c.ACL.Enabled && !binaryRE.MatchString(c.ACL.TokenDir) {
		ps.add("acl.token_dir", "token_dir %q must be an absolute path of letters, digits and . _ - + @ / only (the proxy units name their token files in ExecStart=), e.g. %s", c.ACL.TokenDir, DefaultTokenDir)
	}
	validateDirs(c, ps)
	if c.Backups.Keep < 1 {
		ps.add("backups.keep", "keep %d is not a whole number from 1: give how many backup generations each node keeps (default %d)", c.Backups.Keep, DefaultBackupsKeep)
	}

	if c.Certs.Days < 0 || c.Certs.Days > MaxCertDays {
		ps.add("certs.days", "days %d is not a whole number of days from 1 to %d: give the validity of new node certificates", c.Certs.Days, MaxCertDays)
	}
	if len(c.Datacenters) == 0 {
		ps.add("datacenters", "no datacenters: add at least one with its nodes")
	}
	t := &Topology{Cluster: c}
	dcSeen := map[string]string{}
	nameSeen := map[string]string{}
	addrSeen := map[netip.Addr]string{}
	for i := range c.Datacenters {
		dc := &c.Datacenters[i]
		dp := fmt.Sprintf("datacenters[%d]", i)
		if msg := checkLabel("datacenter name", dc.Name); msg != "" {
			ps.add(dp+".name", "%s", msg)
		} else if prev, dup := dcSeen[dc.Name]; dup {
			ps.add(dp+".name", "datacenter %q is already defined at %s: datacenter names must be unique", dc.Name, prev)
		} else {
			dcSeen[dc.Name] = dp
		}
		if len(dc.Nodes) == 0 {
			ps.add(dp, "datacenter %q has no nodes: add its nodes or remove it", dc.Name)
			continue
		}
		servers, literal := 0, 0
		for j, n := range dc.Nodes {
			np := fmt.Sprintf("%s.nodes[%d]", dp, j)
			if n == nil {
				ps.add(np, "empty node: give at least name and address")
				continue
			}
			n.Datacenter = dc.Name
			if n.Components == nil {
				n.Components = []Component{}
			}
			if n.Line == 0 {
				n.Line = ps.line(np)
			}
			t.Nodes = append(t.Nodes, n)
			validateNode(n, np, c.Mesh.Enabled, ps, nameSeen, addrSeen)
			if len(n.Components) == 0 && n.Name != "" {
				ps.warn(np+".components", "node %q has no components: it only runs a Consul client agent and the egress proxy; list what it runs, or remove it", n.Name)
			}
			if c.Sandbox != nil {
				validateSandboxNode(n, np, ps)
			}
			if n.IsServer() {
				servers++
				if !n.IsTemplate() {
					literal++
				}
			}
		}
		if servers >= MinServers && servers%2 == 0 {
			ps.warn(dp, "datacenter %q has %d Consul servers (zookeeper nodes): an even number tolerates no more failures than %d (quorum is %d); Consul recommends 3 or 5", dc.Name, servers, servers-1, servers/2+1)
		}
		if servers < MinServers {
			ps.add(dp, "datacenter %q has %d Consul server(s) (zookeeper nodes): Apigee mTLS requires at least %d per datacenter; add zookeeper to more nodes", dc.Name, servers, MinServers)
		} else if literal == 0 {
			// retry_join needs an address every agent can dial; a template
			// resolves only on the node that reads it.
			ps.add(dp, "datacenter %q: all its Consul servers (zookeeper nodes) have go-sockaddr template addresses, which resolve only on their own node, so no agent would know where to join: give at least one of them its IP address", dc.Name)
		}
	}
	validatePorts(c, t, ps)
	if err := ps.err(); err != nil {
		return nil, err
	}
	for _, w := range ps.warns {
		t.Warnings = append(t.Warnings, Warning{File: ps.file, Problem: w})
	}
	sort.SliceStable(t.Warnings, func(i, j int) bool { return t.Warnings[i].Line < t.Warnings[j].Line })
	return t, nil
}

func validateConsul(c *Cluster, ps *problems) {
	k := &c.Consul
	if m := semverRE.FindStringSubmatch(k.Version); m == nil {
		ps.add("consul.version", "version %q is not MAJOR.MINOR.PATCH (e.g. \"1.6.2\"; quote it in YAML)", k.Version)
	} else if major, _ := strconv.Atoi(m[1]); major != 1 {
		ps.add("consul.version", "Consul %s is not supported: use a 1.x version from 1.6.0", k.Version)
	} else if minor, _ := strconv.Atoi(m[2]); minor < 6 {
		ps.add("consul.version", "Consul %s is too old: use 1.6.0 or later (Apigee pins 1.6.2)", k.Version)
	}
	for _, d := range labelsOf(k.Domain) {
		if msg := checkLabel("domain label", d); msg != "" {
			ps.add("consul.domain", "domain %q: %s", k.Domain, msg)
			break
		}
	}
	for _, p := range []struct{ field, val string }{
		{"consul.config_dir", k.ConfigDir}, {"consul.tls_dir", k.TLSDir},
		{"consul.data_dir", k.DataDir}, {"node_state_dir", c.NodeStateDir},
	} {
		checkNodePath(ps, p.field, p.val)
	}
	if c.Mesh.Enabled && nodePathOK(c.NodeStateDir) && strings.Trim(c.NodeStateDir, unitSafe) != "" {
		ps.add("node_state_dir", "node_state_dir %q has a character a systemd unit cannot carry unquoted (the firewall unit runs the script in it): use letters, digits and / . _ - + @ , : only, or %s", c.NodeStateDir, meshOff)
	}
	if strings.TrimSpace(k.ReloadCommand) == "" {
		ps.add("consul.reload_command", "reload_command is blank: remove the key for the default %q", DefaultReloadCommand)
	}
	if strings.TrimSpace(k.RestartCommand) == "" {
		ps.add("consul.restart_command", "restart_command is blank: remove the key for the default %q", DefaultRestartCommand)
	}
	if !contains(logLevels, strings.ToUpper(k.LogLevel)) {
		ps.add("consul.log_level", "log level %q is not one of %s", k.LogLevel, strings.Join(logLevels, ", "))
	}
	for _, u := range []struct{ field, val string }{{"consul.user", k.User}, {"consul.group", k.Group}} {
		if strings.ContainsAny(u.val, " \t\n\r:/") {
			ps.add(u.field, "%q is not a valid user or group name", u.val)
		}
	}
}

func labelsOf(domain string) []string {
	return strings.Split(strings.TrimSuffix(domain, "."), ".")
}

// checkNodePath checks a path on the nodes (a directory mtlsctl writes to,
// or the consul binary): absolute, clean, and made only of what the node
// scripts carry. The scripts pass paths in newline- and tab-separated
// lists, and sha256sum escapes a backslash in a file name (its output line
// then no longer matches the name), so control characters and backslashes
// are refused; '..' would leave the directory the file names.
func checkNodePath(ps *problems, field, p string) {
	if msg := nodePathProblem(p); msg != "" {
		ps.add(field, "%s", msg)
	}
}

// nodePathOK reports whether checkNodePath accepts p.
func nodePathOK(p string) bool { return nodePathProblem(p) == "" }

func nodePathProblem(p string) string {
	bad := strings.IndexFunc(p, unicode.IsControl)
	switch {
	case !utf8.ValidString(p):
		return fmt.Sprintf("path %q is not valid UTF-8: write it in UTF-8", p)
	case bad >= 0:
		r, _ := utf8.DecodeRuneInString(p[bad:])
		return fmt.Sprintf("path %q has a control character (%U at byte offset %d), which the node scripts cannot carry: remove it", p, r, bad)
	case strings.Contains(p, "\\"):
		return fmt.Sprintf("path %q has a backslash, which the node scripts cannot carry: separate directories with / and leave \\ out of names", p)
	case !path.IsAbs(p):
		return fmt.Sprintf("path %q must be absolute (it is a path on the nodes), e.g. /%s", p, strings.TrimLeft(p, "./"))
	case hasDotDot(p):
		return fmt.Sprintf("path %q has a '..' segment: give the directory itself, e.g. %s", p, path.Clean(p))
	case path.Clean(p) == "/":
		return fmt.Sprintf("path %q is the root directory: give a directory of its own", p)
	case path.Clean(p) != p:
		return fmt.Sprintf("path %q is not in clean form (a trailing /, // or /./): write it as %s", p, path.Clean(p))
	}
	return ""
}

func hasDotDot(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// unitSafe is what a path in a systemd unit's ExecStart= may hold unquoted
// (systemd splits at spaces and expands % and $); consulcfg renders the
// units with the same set.
const unitSafe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/+@,:"

// managedDir is one directory mtlsctl or the agent writes on every node.
type managedDir struct {
	field, path string
}

// validateDirs refuses managed directories that share or nest where one
// area's owner would write into, chmod or delete another's:
//   - node_state_dir is made 0700 root-only by every apply and deleted whole
//     by uninstall, and holds the lock, the manifest and the backups of
//     replaced keys: it must not be, hold or sit inside another managed
//     directory (inside config_dir or data_dir, a directory the consul user
//     may write, its entries could be swapped), nor hold the consul binary
//     the proxies run;
//   - data_dir is Consul's own (raft, serf, acl-tokens.json): it must not be
//     a directory mtlsctl writes files into.
//
// config_dir and tls_dir may be one directory or nest (the default puts
// tls_dir inside config_dir): the agent reads only *.json and *.hcl of
// config_dir, and no file names collide. Only paths that passed
// checkNodePath are compared.
func validateDirs(c *Cluster, ps *problems) {
	config := managedDir{"consul.config_dir", c.Consul.ConfigDir}
	tls := managedDir{"consul.tls_dir", c.Consul.TLSDir}
	data := managedDir{"consul.data_dir", c.Consul.DataDir}
	dirs := []managedDir{config, tls, data}
	if c.Mesh.Enabled {
		dirs = append(dirs, managedDir{"mesh.unit_dir", c.Mesh.UnitDir})
	}
	if c.ACL.Enabled {
		// The proxies read their tokens there: a root-only state
		// directory around it would lock them out.
		dirs = append(dirs, managedDir{"acl.token_dir", c.ACL.TokenDir})
	}
	if state := (managedDir{"node_state_dir", c.NodeStateDir}); nodePathOK(state.path) {
		checkStateDir(c, ps, state, dirs)
	}
	if !nodePathOK(data.path) {
		return
	}
	for _, d := range dirs {
		if d == data || d.path != data.path {
			continue
		}
		also := ""
		if d == config {
			also = "; the agent would also read its own files there as config"
		}
		ps.add(reportOn(ps, data.field, d.field), "consul.data_dir and %s are both %s: the data directory is Consul's own (raft, serf, acl-tokens.json%s): give each its own directory",
			d.field, d.path, also)
	}
}

// checkStateDir refuses a node_state_dir that is, holds or sits inside one
// of dirs, or holds the consul binary (see validateDirs).
func checkStateDir(c *Cluster, ps *problems, state managedDir, dirs []managedDir) {
	const stateWhy = "it is made root-only (0700) by every apply, deleted whole by uninstall, and holds the node lock and the backups of replaced keys"
	for _, d := range dirs {
		if !nodePathOK(d.path) {
			continue
		}
		switch {
		case d.path == state.path:
			ps.add(reportOn(ps, state.field, d.field), "node_state_dir%s and %s are both %s: node_state_dir must be a directory of its own (%s); give each its own directory",
				defaultNote(ps, state.field), d.field, d.path, stateWhy)
		case within(d.path, state.path):
			ps.add(reportOn(ps, state.field, d.field), "%s %s is inside node_state_dir %s%s: node_state_dir must not hold another directory (%s); move one of them",
				d.field, d.path, state.path, defaultNote(ps, state.field), stateWhy)
		case within(state.path, d.path):
			ps.add(reportOn(ps, state.field, d.field), "node_state_dir %s%s is inside %s %s: keep mtlsctl's node state in a root-only directory of its own (%s); move one of them",
				state.path, defaultNote(ps, state.field), d.field, d.path, stateWhy)
		}
	}
	if c.Mesh.Enabled && nodePathOK(c.Mesh.ConsulBinary) && within(c.Mesh.ConsulBinary, state.path) {
		ps.add(reportOn(ps, state.field, "mesh.consul_binary"), "mesh.consul_binary %s is inside node_state_dir %s%s, which is root-only and deleted by uninstall: the proxies could not run it; install consul elsewhere (e.g. %s)",
			c.Mesh.ConsulBinary, state.path, defaultNote(ps, state.field), DefaultConsulBinary)
	}
}

// within reports whether p is strictly inside dir (both clean and absolute).
func within(p, dir string) bool {
	return strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/") && p != dir
}

// reportOn picks the field to report a clash between a and b on: a when the
// file sets it (or neither is set), else b, so the line shown is one the
// user wrote.
func reportOn(ps *problems, a, b string) string {
	if _, ok := ps.lines[a]; ok {
		return a
	}
	if _, ok := ps.lines[b]; ok {
		return b
	}
	return a
}

// defaultNote says "(the default)" when a file does not set field.
func defaultNote(ps *problems, field string) string {
	if _, ok := ps.lines[field]; !ok && len(ps.lines) > 0 {
		return " (the default)"
	}
	return ""
}

func validateSSH(c *Cluster, ps *problems) {
	s := &c.SSH
	if s.Port < 1 || s.Port > 65535 {
		ps.add("ssh.port", "ssh port %d out of range: give a number from 1 to 65535", s.Port)
	}
	if strings.ContainsAny(s.User, " \t\n\r@:") {
		ps.add("ssh.user", "ssh user %q is not a valid user name", s.User)
	}
	if strings.ContainsAny(s.Bastion, " \t\n\r") {
		ps.add("ssh.bastion", "bastion %q must be [user@]host[:port]", s.Bastion)
	}
}

// validateSandbox checks the sandbox block: an absolute directory, and (per
// node, in validateSandboxNode) SSH to loopback only, so that a file that
// says "sandbox" can never make mtlsctl skip the live steps of a real
// cluster.
func validateSandbox(c *Cluster, ps *problems) {
	if c.Sandbox == nil {
		return
	}
	if !path.IsAbs(c.Sandbox.Dir) {
		ps.add("sandbox.dir", "sandbox dir %q must be an absolute path: the sandbox directory `mtlsctl sandbox up` wrote this file into (remove the sandbox block for a real cluster)", c.Sandbox.Dir)
	}
	if c.SSH.Bastion != "" {
		ps.add("ssh.bastion", "a sandbox cluster reaches its nodes on 127.0.0.1 directly: remove the bastion (or the sandbox block for a real cluster)")
	}
}

// validateSandboxNode refuses a sandbox node reached anywhere but loopback.
func validateSandboxNode(n *Node, np string, ps *problems) {
	host := n.SSHHost
	if host == "" {
		host = n.Address
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		ps.add(np+".ssh_host", "node %s: a sandbox node must be reached on 127.0.0.1, not %q: this file has a sandbox block, which makes mtlsctl skip the live Consul steps; remove that block for a real cluster", n.Name, host)
	}
}

// userRE is a plausible Unix user name (useradd's rules, upper case allowed).
var userRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)

// binaryRE is a path that goes into a systemd ExecStart= as is: no spaces,
// quotes, '%' specifiers or '$' variables.
var binaryRE = regexp.MustCompile(`^/[A-Za-z0-9._+@/-]*[A-Za-z0-9._+@-]$`)

// meshOff is the fix every mesh-only refusal offers as its alternative.
const meshOff = "set mesh: {enabled: false}"

func validateMesh(c *Cluster, ps *problems) {
	m := &c.Mesh
	checkNodePath(ps, "mesh.unit_dir", m.UnitDir)
	if m.Enabled && nodePathOK(m.UnitDir) && strings.Trim(m.UnitDir, unitSafe) != "" {
		ps.add("mesh.unit_dir", "unit_dir %q has a character systemd unit paths cannot carry unquoted: use letters, digits and / . _ - + @ , : only (e.g. %s)", m.UnitDir, DefaultUnitDir)
	}
	if !binaryRE.MatchString(m.ConsulBinary) {
		ps.add("mesh.consul_binary", "consul_binary %q must be the absolute path of the consul binary on the nodes, of letters, digits and . _ - + @ / only (it goes into the proxy units' ExecStart=), e.g. %s", m.ConsulBinary, DefaultConsulBinary)
	} else if msg := nodePathProblem(m.ConsulBinary); msg != "" {
		ps.add("mesh.consul_binary", "%s", msg)
	}
	if !userRE.MatchString(m.ProxyUser) {
		if _, set := ps.lines["mesh.proxy_user"]; set || len(ps.lines) == 0 {
			ps.add("mesh.proxy_user", "proxy_user %q is not a valid user name: a letter or '_', then letters, digits, '.', '_' or '-', at most 32 characters (e.g. %s)", m.ProxyUser, DefaultProxyUser)
		} else {
			ps.add("consul.user", "the proxies run as consul.user %q by default, which is not a valid user name for them: fix it, or set mesh.proxy_user (e.g. %s)", m.ProxyUser, DefaultProxyUser)
		}
	}
	seen := map[[2]Component]string{}
	for i, rule := range m.Allow {
		ap := fmt.Sprintf("mesh.allow[%d]", i)
		if _, ok := ps.lines[ap]; !ok && rule.Line > 0 {
			ps.lines[ap] = rule.Line
		}
		fromOK, toOK := true, true
		switch {
		case rule.From == "":
			ps.add(ap+".from", "allow rule has no from: give the component that connects, e.g. {from: management-server, to: qpid}")
			fromOK = false
		case !validComponent(rule.From):
			ps.add(ap+".from", "%s", unknownComponent(rule.From, Components))
			fromOK = false
		}
		switch {
		case rule.To == "":
			ps.add(ap+".to", "allow rule has no to: give the component connected to, e.g. {from: management-server, to: qpid}")
			toOK = false
		case validComponent(rule.To) && !meshTarget(rule.To):
			ps.add(ap+".to", "%s has no mesh listener to allow traffic to (its clients reach it outside the mesh): give one of %s", rule.To, strings.Join(meshTargets(), ", "))
			toOK = false
		case !meshTarget(rule.To):
			var targets []Component
			for _, t := range meshTargets() {
				targets = append(targets, Component(t))
			}
			ps.add(ap+".to", "%s", unknownComponent(rule.To, targets))
			toOK = false
		}
		if !fromOK || !toOK {
			continue
		}
		key := [2]Component{rule.From, rule.To}
		if prev, dup := seen[key]; dup {
			ps.add(ap, "allow rule from %s to %s is already given at %s: remove one", rule.From, rule.To, prev)
			continue
		}
		where := ap
		if l := ps.line(ap); l > 0 {
			where = fmt.Sprintf("line %d", l)
		}
		seen[key] = where
	}
}

// meshTargets lists the components that have mesh listeners, in order.
func meshTargets() []string {
	var out []string
	for _, c := range Components {
		if meshTarget(c) {
			out = append(out, string(c))
		}
	}
	return out
}

// unknownComponent says that c is not one of valid, suggesting the closest.
func unknownComponent(c Component, valid []Component) string {
	names := make([]string, len(valid))
	for i, v := range valid {
		names[i] = string(v)
	}
	msg := fmt.Sprintf("unknown component %q", string(c))
	if s := suggest(string(c), names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return fmt.Sprintf("%s; valid: %s", msg, strings.Join(names, ", "))
}

func validateNode(n *Node, np string, mesh bool, ps *problems, names map[string]string, addrs map[netip.Addr]string) {
	if msg := checkLabel("node name", n.Name); msg != "" {
		ps.add(np+".name", "%s", msg)
	} else if prev, dup := names[n.Name]; dup {
		ps.add(np+".name", "node name %q is already used by %s: node names must be unique across the cluster", n.Name, prev)
	} else {
		names[n.Name] = np
	}
	label := n.Name
	if label == "" {
		label = np
	}
	switch {
	case n.Address == "":
		ps.add(np+".address", "node %s has no address: give its IP (or a go-sockaddr template with ssh_host)", label)
	case strings.HasPrefix(n.Address, "{{") && mesh:
		ps.add(np+".address", "node %s: address is a go-sockaddr template, but the mesh needs the node's own IPv4 address (its proxies and firewall rules are written with it): set address to the node's IPv4 address, or %s", label, meshOff)
	case strings.HasPrefix(n.Address, "{{"):
		if err := checkTemplate(n.Address); err != nil {
			ps.add(np+".address", "node %s: address template does not parse: %v", label, err)
		}
		if n.SSHHost == "" {
			ps.add(np+".address", "node %s: address is a template that only the node can resolve: set ssh_host so mtlsctl can reach it", label)
		}
	default:
		ip, err := parseIP(n.Address)
		if err != nil {
			ps.add(np+".address", "node %s: %v", label, err)
			break
		}
		if raw, _ := netip.ParseAddr(n.Address); mesh && !raw.Is4() {
			hint := "set address to the node's IPv4 address"
			if ip.Is4() {
				hint = fmt.Sprintf("write address as %s", ip)
			}
			ps.add(np+".address", "node %s: address %s is not an IPv4 address, which the mesh needs (its firewall and nat rules are IPv4): %s, or %s", label, n.Address, hint, meshOff)
		}
		if prev, dup := addrs[ip]; dup {
			ps.add(np+".address", "node %s: address %s is already used by %s: each node needs its own address", label, n.Address, prev)
		} else {
			addrs[ip] = np
		}
	}
	if n.SSHHost != "" && strings.ContainsAny(n.SSHHost, " \t\n\r/@") {
		ps.add(np+".ssh_host", "node %s: ssh_host %q must be a host name or IP (set ssh_user and ssh_port separately)", label, n.SSHHost)
	}
	if strings.ContainsAny(n.SSHUser, " \t\n\r@:") {
		ps.add(np+".ssh_user", "node %s: ssh_user %q is not a valid user name", label, n.SSHUser)
	}
	if n.SSHPort < 0 || n.SSHPort > 65535 {
		ps.add(np+".ssh_port", "node %s: ssh_port %d out of range: give a number from 1 to 65535", label, n.SSHPort)
	}
	seen := map[Component]bool{}
	for k, comp := range n.Components {
		cp := fmt.Sprintf("%s.components[%d]", np, k)
		switch {
		case !validComponent(comp) && strings.Contains(string(comp), " - "):
			// YAML folds a "- item" indented deeper than the one above
			// into that item's text.
			ps.add(cp, "%q is list items run together: a \"-\" below this line is indented deeper than this one; align it with this line's \"-\"", comp)
		case !validComponent(comp):
			ps.add(cp, "%s", unknownComponent(comp, Components))
		case seen[comp]:
			ps.add(cp, "node %s lists component %s twice: remove one", label, comp)
		}
		seen[comp] = true
	}
}

// parseIP checks an IP literal (go-sockaddr's view of it) without any name
// resolution.
func parseIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q is not an IP address (host names are not accepted: give the IP, or a go-sockaddr template starting with {{)", s)
	}
	if ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has an IPv6 zone: give a routable address", s)
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 128
	}
	// A CIDR parse never resolves names; it gives go-sockaddr's type for the host.
	sa, err := sockaddr.NewIPAddr(ip.String() + "/" + strconv.Itoa(bits))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: %v", s, err)
	}
	if kind := notNodeAddress(ip); kind != "" {
		return netip.Addr{}, fmt.Errorf("address %q is %s, which cannot be a node's address: give the IP the other nodes reach this node at", s, kind)
	}
	if sa.Maskbits() != bits {
		return netip.Addr{}, fmt.Errorf("address %q cannot be a node's address: give the node's unicast IP", s)
	}
	return ip, nil
}

// notNodeAddress names the kind of ip when no node can be reached at it by
// the other members (and no agent can bind and advertise it), or "".
func notNodeAddress(ip netip.Addr) string {
	switch {
	case ip.IsUnspecified():
		return "the unspecified address (any address)"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "the IPv4 broadcast address"
	case ip.IsMulticast():
		return "a multicast address"
	case ip.IsLinkLocalUnicast() && ip.Is4():
		return "link-local (169.254.0.0/16, not routed and often assigned by the host itself)"
	case ip.IsLinkLocalUnicast():
		return "link-local (fe80::/10, valid only with an interface zone and not routed)"
	}
	return ""
}

// checkTemplate parses a go-sockaddr template without executing it: what it
// resolves to depends on the node's interfaces, which only the agent sees.
func checkTemplate(s string) error {
	_, err := template.New("address").
		Funcs(sockaddrtemplate.SourceFuncs).
		Funcs(sockaddrtemplate.SortFuncs).
		Funcs(sockaddrtemplate.FilterFuncs).
		Funcs(sockaddrtemplate.HelperFuncs).
		Parse(s)
	return err
}

func validatePorts(c *Cluster, t *Topology, ps *problems) {
	keys := PortKeys()
	for _, k := range keys {
		r := c.Ports[k]
		field := "ports." + k
		where := ""
		if _, ok := ps.lines[field]; !ok && len(ps.lines) > 0 {
			where = " (the default range)"
		}
		if r.Min < 1024 || r.Max > 65535 || r.Min > r.Max {
			ps.add(field, "%s range %s%s is outside 1024-65535: pick unprivileged ports", k, r, where)
			continue
		}
		consul := false
		for _, cp := range ConsulPorts {
			if r.Contains(cp) {
				ps.add(field, "%s range %s%s includes Consul's port %d: move it (Consul uses %s)", k, r, where, cp, joinInts(ConsulPorts))
				consul = true
				break
			}
		}
		if hits := collidingPorts(k, r); !consul && len(hits) > 0 {
			ps.add(field, "%s range %s%s includes Apigee service port(s) %s: a proxy must not take a component's own port; move the range, %s",
				k, r, where, describeServicePorts(hits), freeRange(c, k, r))
		}
		if shared(k, r) {
			continue // every node uses the same ports
		}
		per := PortsPerNode(k)
		need := 0
		for _, n := range t.Nodes {
			if k == Egress || n.Has(Component(k)) {
				need += per
			}
		}
		if size := r.Size() - len(servicePortsIn(r)); need > size {
			ps.add(field, "%s range %s%s has %d ports but its nodes need %d (%d per node): widen it, e.g. %s: %d-%d, or %s",
				k, r, where, size, need, per, k, r.Min, suggestMax(r.Min, need), shareAdvice(k, r.Min))
		}
	}
	for i, a := range keys {
		for _, b := range keys[i+1:] {
			ra, rb := c.Ports[a], c.Ports[b]
			if !ra.Overlaps(rb) {
				continue
			}
			// Report on the range the file sets, when only one is set.
			_, aSet := ps.lines["ports."+a]
			_, bSet := ps.lines["ports."+b]
			other, this := a, b
			if aSet && !bSet {
				other, this, ra, rb = b, a, rb, ra
			}
			if shared(this, rb) || shared(other, ra) {
				ps.add("ports."+this, "%s range %s overlaps the %s range %s: a node running both would get the same port twice (%s); give each its own ports, %s",
					this, rb, other, ra, sharedNote(this, rb, other, ra), freeRange(c, this, rb))
				continue
			}
			ps.add("ports."+this, "%s range %s overlaps the %s range %s: proxy ranges must not overlap, give each component its own range", this, rb, other, ra)
		}
	}
}

// shareAdvice is the alternative to widening key's range: exactly one node's
// share of ports, starting at minP, that every node then uses.
func shareAdvice(key string, minP int) string {
	per := PortsPerNode(key)
	r := PortRange{Min: minP, Max: min(minP+per-1, 65535)}
	return fmt.Sprintf("give it exactly %d port(s) (e.g. %s: %s) so that every node uses the same", per, key, r)
}

// sharedNote says which of two overlapping ranges is shared.
func sharedNote(a string, ra PortRange, b string, rb PortRange) string {
	var notes []string
	for _, x := range []struct {
		key string
		r   PortRange
	}{{a, ra}, {b, rb}} {
		if !shared(x.key, x.r) {
			continue
		}
		who := "every " + x.key + " node"
		if x.key == Egress {
			who = "every node"
		}
		notes = append(notes, fmt.Sprintf("%s range %s is shared: %s uses all of it", x.key, x.r, who))
	}
	return strings.Join(notes, "; ")
}

// freeRange proposes r.Size() ports for key that overlap no other range of c
// and no service port (ServicePorts, Consul's included): from the start of key's default range upwards, else
// from r's start, else from 10000.
func freeRange(c *Cluster, key string, r PortRange) string {
	for _, from := range []int{defaultRanges[key].Min, max(r.Min, 1024), 10000} {
		for start := from; start+r.Size()-1 <= 65535; {
			try := PortRange{Min: start, Max: start + r.Size() - 1}
			next := 0
			for k, o := range c.Ports {
				if k != key && o.Overlaps(try) {
					next = max(next, o.Max+1)
				}
			}
			for _, sp := range servicePortsIn(try) {
				next = max(next, sp.Port+1)
			}
			if next == 0 {
				return fmt.Sprintf("e.g. %s: %s", key, try)
			}
			start = next
		}
	}
	return "move one of them"
}

// suggestMax rounds a range end up to the next ...99 that fits need ports.
func suggestMax(minP, need int) int {
	end := minP + need - 1
	if r := (end + 1) % 100; r != 0 {
		end += 100 - r
	}
	return min(end, 65535)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// ConsulVersionAtLeast reports whether the Consul version v (MAJOR.MINOR.PATCH)
// is at least major.minor; false when v does not parse.
func ConsulVersionAtLeast(v string, major, minor int) bool {
	m := semverRE.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	vmaj, _ := strconv.Atoi(m[1])
	vmin, _ := strconv.Atoi(m[2])
	return vmaj > major || vmaj == major && vmin >= minor
}

// AtLeast reports whether the cluster's Consul version is at least major.minor
// (e.g. AtLeast(1, 12) picks the tls {} config stanza).
func (c Consul) AtLeast(major, minor int) bool {
	return ConsulVersionAtLeast(c.Version, major, minor)
}
