package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds what Load reads: a cluster file is a few kilobytes.
const maxFileSize = 8 << 20

// maxYAMLNodes bounds the YAML nodes visited (aliases included), so a file
// that expands exponentially through aliases is refused instead of eating
// memory.
const maxYAMLNodes = 200_000

// ErrNoClusterFile is matched (errors.Is) by the error of Load when the
// cluster file does not exist; so is fs.ErrNotExist.
var ErrNoClusterFile error = noFileError{}

type noFileError struct{}

func (noFileError) Error() string        { return "no such file" }
func (noFileError) Is(target error) bool { return target == fs.ErrNotExist }

// Load reads, defaults and validates the cluster file at path. Problems are
// reported as a *ValidationError naming path, line and field.
func Load(path string) (*Topology, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster file %s: %w", path, ErrNoClusterFile)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cluster file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("cluster file %s: larger than %d bytes: %w", path, maxFileSize, ErrInvalid)
	}
	t, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	t.Cluster.Source = path
	return t, nil
}

// Parse decodes the cluster file data (name is used in error messages only),
// applies the defaults and validates it. All problems found are returned
// together as a *ValidationError. Parse never panics.
func Parse(name string, data []byte) (*Topology, error) {
	ps := newProblems(name)
	c := decode(ps, data)
	if c == nil {
		return nil, ps.err()
	}
	return validate(c, ps)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decode turns data into a Cluster, recording each field's line in ps. It
// returns nil when the YAML itself cannot be read.
func decode(ps *problems, data []byte) *Cluster {
	if line, msg := checkText(data); msg != "" {
		ps.addLine(line, "", "%s", msg)
		return nil
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			ps.addLine(1, "", "the cluster file is empty: it needs at least cluster and datacenters")
			return nil
		}
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		line := 0
		if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
		if strings.HasPrefix(msg, "mapping values are not allowed") {
			msg += " (a key indented deeper than the one above it? check this line's indentation)"
		}
		if off := offendingLine(data, line); off > line {
			// yaml names the start of the block it was in; the slip (an
			// indentation, most often) is on the first line that breaks it.
			msg += fmt.Sprintf(" (in the block from line %d: check this line's indentation)", line)
			line = off
		}
		ps.addLine(line, "", "not valid YAML: %s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		ps.addLine(extra.Line, "", "more than one YAML document: a cluster file holds one (remove the extra \"---\")")
	} else if !errors.Is(err, io.EOF) {
		ps.addLine(0, "", "after the first document: %v", err)
	}
	d := &decoder{ps: ps}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			ps.addLine(1, "", "the cluster file is empty: it needs at least cluster and datacenters")
			return nil
		}
		root = root.Content[0]
	}
	ps.lines[""] = root.Line
	c := &Cluster{}
	d.cluster(root, c)
	if d.exhausted {
		return nil
	}
	return c
}

// offendingLine returns the first line whose text makes data invalid YAML:
// the smallest n such that lines 1..n do not parse (binary search; a block
// cut at a line boundary parses). 0 when it cannot tell (from is not before
// it, or data's first from lines already fail).
func offendingLine(data []byte, from int) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	fails := func(n int) bool {
		var v yaml.Node
		err := yaml.Unmarshal(bytes.Join(lines[:n], nil), &v)
		return err != nil
	}
	if from < 1 || from >= len(lines) || fails(from) || !fails(len(lines)) {
		return 0
	}
	lo, hi := from, len(lines) // lines[:lo] parse, lines[:hi] fail
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// decoder walks the yaml.Node tree, reporting shape problems to ps.
type decoder struct {
	ps        *problems
	visits    int
	exhausted bool
}

// resolve follows an alias and counts the visit against maxYAMLNodes.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	if n == nil || d.exhausted {
		return nil
	}
	d.visits++
	if d.visits > maxYAMLNodes {
		d.exhausted = true
		d.ps.addLine(n.Line, "", "the file expands to more than %d YAML nodes (aliases?): refusing to read it", maxYAMLNodes)
		return nil
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		return d.resolve(n.Alias)
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// fields returns the values of a mapping by key, reporting a non-mapping,
// non-string keys, duplicate keys and keys not in allowed (typos). It records
// each key's line under path.key.
func (d *decoder) fields(n *yaml.Node, path string, allowed ...string) map[string]*yaml.Node {
	n = d.resolve(n)
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return map[string]*yaml.Node{}
	}
	if n.Kind != yaml.MappingNode {
		d.ps.addLine(n.Line, path, "must be a mapping of keys, found %s", kindName(n))
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i]), n.Content[i+1]
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.ps.addLine(k.Line, path, "keys must be plain words, found %s", kindName(k))
			continue
		}
		field := k.Value
		if path != "" {
			field = path + "." + k.Value
		}
		if !contains(allowed, k.Value) {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if s := suggest(k.Value, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.ps.addLine(k.Line, field, "%s; valid keys here: %s", msg, strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			d.ps.addLine(k.Line, field, "key %q given twice (first on line %d): keep one", k.Value, d.ps.lines[field])
			continue
		}
		out[k.Value] = v
		d.ps.lines[field] = k.Line
	}
	return out
}

// list returns the items of a sequence (null is an empty list).
func (d *decoder) list(n *yaml.Node, path string) []*yaml.Node {
	n = d.resolve(n)
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.ps.addLine(n.Line, path, "must be a list, found %s", kindName(n))
		return nil
	}
	return n.Content
}

// str decodes a scalar as a string (null is "").
func (d *decoder) str(n *yaml.Node, path string) string {
	n = d.resolve(n)
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		d.ps.addLine(n.Line, path, "must be a single value, found %s", kindName(n))
		return ""
	}
	if n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

// port decodes a TCP port (1-65535). ok is false when it was reported.
func (d *decoder) port(n *yaml.Node, path string) (int, bool) {
	n = d.resolve(n)
	if n == nil {
		return 0, false
	}
	s := d.str(n, path)
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		d.ps.addLine(n.Line, path, "port %q out of range: give a number from 1 to 65535", s)
		return 0, false
	}
	return p, true
}

// boolean decodes true/false (yes/no and y/n accepted too).
func (d *decoder) boolean(n *yaml.Node, path string) bool {
	n = d.resolve(n)
	if n == nil {
		return false
	}
	s := d.str(n, path)
	switch strings.ToLower(s) {
	case "true", "yes", "y", "on":
		return true
	case "false", "no", "n", "off", "":
		return false
	}
	d.ps.addLine(n.Line, path, "must be true or false, found %q", s)
	return false
}

func (d *decoder) cluster(root *yaml.Node, c *Cluster) {
	f := d.fields(root, "", "cluster", "consul", "ssh", "ports", "node_state_dir", "backups", "certs", "mesh", "acl", "datacenters", "sandbox")
	c.Mesh.Enabled = true // the mesh is on unless the file turns it off
	c.ACL.Enabled = true  // so are ACLs
	if f == nil {
		return
	}
	c.Name = d.str(f["cluster"], "cluster")
	c.NodeStateDir = d.str(f["node_state_dir"], "node_state_dir")
	if n, ok := f["consul"]; ok {
		d.consul(n, &c.Consul)
	}
	if n, ok := f["ssh"]; ok {
		d.ssh(n, &c.SSH)
	}
	if n, ok := f["ports"]; ok {
		c.Ports = d.ports(n)
	}
	if n, ok := f["backups"]; ok {
		d.backups(n, &c.Backups)
	}
	if n, ok := f["certs"]; ok {
		d.certs(n, &c.Certs)
	}
	if n, ok := f["mesh"]; ok {
		d.mesh(n, &c.Mesh)
	}
	if n, ok := f["acl"]; ok {
		d.acl(n, &c.ACL)
	}
	if n, ok := f["sandbox"]; ok {
		sf := d.fields(n, "sandbox", "dir")
		c.Sandbox = &Sandbox{Dir: d.str(sf["dir"], "sandbox.dir")}
	}
	if n, ok := f["datacenters"]; ok {
		for i, dn := range d.list(n, "datacenters") {
			c.Datacenters = append(c.Datacenters, d.datacenter(dn, fmt.Sprintf("datacenters[%d]", i)))
		}
	}
}

func (d *decoder) consul(n *yaml.Node, c *Consul) {
	f := d.fields(n, "consul", "version", "domain", "config_dir", "tls_dir", "data_dir",
		"reload_command", "restart_command", "user", "group", "log_level")
	for key, dst := range map[string]*string{
		"version": &c.Version, "domain": &c.Domain, "config_dir": &c.ConfigDir,
		"tls_dir": &c.TLSDir, "data_dir": &c.DataDir, "reload_command": &c.ReloadCommand,
		"restart_command": &c.RestartCommand, "user": &c.User, "group": &c.Group,
		"log_level": &c.LogLevel,
	} {
		if v, ok := f[key]; ok {
			*dst = d.str(v, "consul."+key)
		}
	}
}

func (d *decoder) ssh(n *yaml.Node, s *SSH) {
	f := d.fields(n, "ssh", "user", "port", "identity_file", "known_hosts", "bastion", "sudo")
	s.User = d.str(f["user"], "ssh.user")
	s.IdentityFile = d.str(f["identity_file"], "ssh.identity_file")
	s.KnownHosts = d.str(f["known_hosts"], "ssh.known_hosts")
	s.Bastion = d.str(f["bastion"], "ssh.bastion")
	s.Sudo = d.boolean(f["sudo"], "ssh.sudo")
	if v, ok := f["port"]; ok {
		s.Port, _ = d.port(v, "ssh.port")
	}
}

// backups decodes the backups block. keep must be a whole number from 1: a
// node always keeps the backup its last commit made.
func (d *decoder) backups(n *yaml.Node, b *Backups) {
	f := d.fields(n, "backups", "keep")
	v, ok := f["keep"]
	if !ok {
		return
	}
	r := d.resolve(v)
	if r == nil {
		return
	}
	s := d.str(r, "backups.keep")
	k, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || k < 1 {
		d.ps.addLine(r.Line, "backups.keep", "keep %q is not a whole number from 1: give how many backup generations each node keeps (default %d; the newest is always kept)", s, DefaultBackupsKeep)
		return
	}
	b.Keep = k
}

// certs decodes the certs block. days must be a whole number of days from 1
// to MaxCertDays.
func (d *decoder) certs(n *yaml.Node, c *Certs) {
	f := d.fields(n, "certs", "days")
	r := d.resolve(f["days"])
	if r == nil {
		return
	}
	s := d.str(r, "certs.days")
	days, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || days < 1 || days > MaxCertDays {
		d.ps.addLine(r.Line, "certs.days", "days %q is not a whole number of days from 1 to %d: give the validity of new node certificates (or remove the key for generate's default, 365)", s, MaxCertDays)
		return
	}
	c.Days = days
}

// mesh decodes the mesh block. A missing enabled key leaves the mesh on.
func (d *decoder) mesh(n *yaml.Node, m *Mesh) {
	f := d.fields(n, "mesh", "enabled", "unit_dir", "consul_binary", "proxy_user", "encapsulate_ldap", "allow")
	if v, ok := f["encapsulate_ldap"]; ok {
		m.LDAPOutside = !d.boolean(v, "mesh.encapsulate_ldap")
	}
	if v, ok := f["enabled"]; ok {
		if r := d.resolve(v); r != nil && r.Kind == yaml.ScalarNode && r.Tag == "!!null" {
			d.ps.addLine(r.Line, "mesh.enabled", "must be true or false, found nothing: write true, or false to keep Consul only (or remove the key: the mesh is on by default)")
		} else {
			m.Enabled = d.boolean(v, "mesh.enabled")
		}
	}
	m.UnitDir = d.str(f["unit_dir"], "mesh.unit_dir")
	m.ConsulBinary = d.str(f["consul_binary"], "mesh.consul_binary")
	m.ProxyUser = d.str(f["proxy_user"], "mesh.proxy_user")
	if an, ok := f["allow"]; ok {
		for i, item := range d.list(an, "mesh.allow") {
			ap := fmt.Sprintf("mesh.allow[%d]", i)
			rule := AllowRule{}
			if r := d.resolve(item); r != nil {
				d.ps.lines[ap] = r.Line
				rule.Line = r.Line
			}
			rf := d.fields(item, ap, "from", "to")
			rule.From = Component(d.str(rf["from"], ap+".from"))
			rule.To = Component(d.str(rf["to"], ap+".to"))
			m.Allow = append(m.Allow, rule)
		}
	}
}

// acl decodes the acl block. A missing enabled key leaves ACLs on.
func (d *decoder) acl(n *yaml.Node, a *ACL) {
	f := d.fields(n, "acl", "enabled", "token_dir")
	if v, ok := f["enabled"]; ok {
		if r := d.resolve(v); r != nil && r.Kind == yaml.ScalarNode && r.Tag == "!!null" {
			d.ps.addLine(r.Line, "acl.enabled", "must be true or false, found nothing: write true, or false to leave the agents' HTTP API open to local users (or remove the key: ACLs are on by default)")
		} else {
			a.Enabled = d.boolean(v, "acl.enabled")
		}
	}
	a.TokenDir = d.str(f["token_dir"], "acl.token_dir")
}

// ports decodes the range overrides; malformed ones are reported and left out.
func (d *decoder) ports(n *yaml.Node) map[string]PortRange {
	keys := append(PortKeys(), string(ManagementServer), string(UI))
	f := d.fields(n, "ports", keys...)
	out := map[string]PortRange{}
	names := make([]string, 0, len(f))
	for k := range f {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		field := "ports." + k
		if PortsPerNode(k) == 0 {
			d.ps.add(field, "%s needs no proxy ports: remove this line", k)
			continue
		}
		s := d.str(f[k], field)
		r, err := ParsePortRange(s)
		if err != nil {
			d.ps.add(field, "%v", err)
			continue
		}
		out[k] = r
	}
	return out
}

func (d *decoder) datacenter(n *yaml.Node, path string) Datacenter {
	var dc Datacenter
	if r := d.resolve(n); r != nil {
		d.ps.lines[path] = r.Line
	}
	f := d.fields(n, path, "name", "nodes")
	dc.Name = d.str(f["name"], path+".name")
	if nn, ok := f["nodes"]; ok {
		for i, item := range d.list(nn, path+".nodes") {
			np := fmt.Sprintf("%s.nodes[%d]", path, i)
			dc.Nodes = append(dc.Nodes, d.node(item, np))
		}
	}
	return dc
}

func (d *decoder) node(n *yaml.Node, path string) *Node {
	node := &Node{}
	if r := d.resolve(n); r != nil {
		d.ps.lines[path] = r.Line
		node.Line = r.Line
	}
	f := d.fields(n, path, "name", "address", "components", "ssh_host", "ssh_user", "ssh_port")
	node.Name = d.str(f["name"], path+".name")
	node.Address = d.str(f["address"], path+".address")
	node.SSHHost = d.str(f["ssh_host"], path+".ssh_host")
	node.SSHUser = d.str(f["ssh_user"], path+".ssh_user")
	if v, ok := f["ssh_port"]; ok {
		node.SSHPort, _ = d.port(v, path+".ssh_port")
	}
	if cn, ok := f["components"]; ok {
		node.Components = []Component{}
		for i, item := range d.list(cn, path+".components") {
			cp := fmt.Sprintf("%s.components[%d]", path, i)
			if r := d.resolve(item); r != nil {
				d.ps.lines[cp] = r.Line
			}
			node.Components = append(node.Components, Component(d.str(item, cp)))
		}
	}
	return node
}

// ParsePortRange parses "MIN-MAX" (spaces allowed around the dash).
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, fmt.Errorf("port range %q is not MIN-MAX (e.g. 10300-10399)", s)
	}
	minP, err1 := strconv.Atoi(strings.TrimSpace(lo))
	maxP, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil {
		return PortRange{}, fmt.Errorf("port range %q is not MIN-MAX with two numbers (e.g. 10300-10399)", s)
	}
	if minP > maxP {
		return PortRange{}, fmt.Errorf("port range %q starts above its end: write the smaller port first", s)
	}
	return PortRange{Min: minP, Max: maxP}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggest returns the candidate closest to s when it is a likely typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if dist := editDistance(strings.ToLower(s), c); dist < bestD {
			best, bestD = c, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance, bounded in cost by short inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkText finds the first byte of an input file that is not UTF-8 text,
// which the YAML reader refuses without saying where: an invalid UTF-8
// sequence, or a character outside YAML's printable set (C0 controls but
// tab, CR and LF; DEL; C1 controls but NEL; U+FFFE, U+FFFF). It returns its
// line and a message with the column and byte offset, or "" when the text
// is fine. A UTF-16 or UTF-32 file is refused as a whole: input files are
// UTF-8, like what Marshal writes. The silent-config importer uses it too.
func checkText(data []byte) (int, string) {
	switch {
	case bytes.HasPrefix(data, []byte{0, 0, 0xfe, 0xff}), bytes.HasPrefix(data, []byte{0xff, 0xfe, 0, 0}):
		return 1, "the file is UTF-32 (it starts with a byte-order mark): save it as UTF-8"
	case bytes.HasPrefix(data, []byte{0xfe, 0xff}), bytes.HasPrefix(data, []byte{0xff, 0xfe}):
		return 1, "the file is UTF-16 (it starts with a byte-order mark): save it as UTF-8"
	}
	line, lineStart := 1, 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		var what string
		switch {
		case r == utf8.RuneError && size <= 1:
			what = fmt.Sprintf("byte 0x%02x is not valid UTF-8", data[i])
		case !yamlPrintable(r):
			what = fmt.Sprintf("character %U is a control character, not text", r)
		}
		if what != "" {
			col := utf8.RuneCount(data[lineStart:i]) + 1
			return line, fmt.Sprintf("%s (column %d, byte offset %d): save the file as UTF-8 text without it", what, col, i)
		}
		if r == '\n' {
			line, lineStart = line+1, i+1
		}
		i += size
	}
	return 0, ""
}

// yamlPrintable is YAML 1.2's c-printable set, which the YAML reader
// checks every character against.
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t' || r == '\n' || r == '\r' || r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}
