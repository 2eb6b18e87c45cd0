package inventory

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Import is what ImportApigee reads from an Apigee silent config. Cluster is
// validated and ready for Marshal. GossipKey is a secret: never print it.
type Import struct {
	Cluster *Cluster
	// GossipKey is ENCRYPT_DATA ("" when absent).
	GossipKey string
	// CACertPath and CAKeyPath are PATH_TO_CA_CERT and PATH_TO_CA_KEY, as
	// written (paths on the machine where the Apigee install was prepared).
	CACertPath, CAKeyPath string
	// Warnings are settings that were not carried over, or need attention.
	Warnings []string
	// Sources names the silent config file(s) read.
	Sources []string

	remotes []remoteRegion
}

// remoteRegion is a MTLS_REMOTE_REGION_<N>_NAME/_IP pair of a file that
// does not split ALL_IP (no MTLS_LOCAL_REGION_IP): its hosts come from
// another region's file.
type remoteRegion struct {
	name, source string
	ips          []string
}

// DefaultImportCluster is the cluster name ImportApigee gives (a silent config
// has no such setting); set Import.Cluster.Name before Marshal to change it.
const DefaultImportCluster = "edge"

// apigeeHostLists maps each *_MTLS_HOSTS property to its component.
var apigeeHostLists = []struct {
	key  string
	comp Component
}{
	{"ZK_MTLS_HOSTS", ZooKeeper},
	{"CASS_MTLS_HOSTS", Cassandra},
	{"LDAP_MTLS_HOSTS", OpenLDAP},
	{"PG_MTLS_HOSTS", Postgres},
	{"QP_MTLS_HOSTS", Qpid},
	{"MP_MTLS_HOSTS", MessageProcessor},
	{"RT_MTLS_HOSTS", Router},
	{"MS_MTLS_HOSTS", ManagementServer},
}

// apigeePortNames maps the <X> of SMI_PROXY_MINIMUM_<X>_PROXY_PORT to a ports key.
var apigeePortNames = []struct{ x, key string }{
	{"ZOOKEEPER", string(ZooKeeper)},
	{"CASSANDRA", string(Cassandra)},
	{"LDAP", string(OpenLDAP)},
	{"POSTGRES", string(Postgres)},
	{"QPID", string(Qpid)},
	{"MESSAGEPROCESSOR", string(MessageProcessor)},
	{"ROUTER", string(Router)},
	{"EGRESS", Egress},
}

var remoteNameRE = regexp.MustCompile(`^MTLS_REMOTE_REGION_(\d+)_NAME$`)

// NodeNameForIP is the node name an import gives the host with address ip:
// "node-" and the address with dots (or colons) as dashes, e.g.
// node-198-18-0-11. It is stable across re-imports and readable in logs.
func NodeNameForIP(ip netip.Addr) string {
	if ip.Is4() {
		return "node-" + strings.ReplaceAll(ip.String(), ".", "-")
	}
	return "node-" + strings.ReplaceAll(ip.StringExpanded(), ":", "-")
}

// ImportApigee turns one Apigee silent config (name is used in messages) into
// a cluster: one datacenter (REGION, default dc-1) with a node per ALL_IP
// host, named by NodeNameForIP, running the components whose *_MTLS_HOSTS
// list it is in (hosts in no list become nodes with no component). Port
// ranges come from SMI_PROXY_{MINIMUM,MAXIMUM}_<X>_PROXY_PORT.
//
// A host in a *_MTLS_HOSTS list that is missing from ALL_IP is an error: the
// file is inconsistent and guessing would hide a typo. Problems are returned
// together as a *ValidationError naming the file, line and property. Shell
// syntax understood: KEY=VALUE, optional "export ", quotes, # comments, and
// $NAME / ${NAME} references to earlier keys; a key that needs anything else
// (e.g. $(hostname -i)) is an error only when the import uses it.
func ImportApigee(name string, data []byte) (*Import, error) {
	ps := newProblems(name)
	vars := parseSilent(ps, data)
	if vars == nil {
		return nil, ps.err()
	}
	get := func(key string) (silentVar, bool) {
		v, ok := vars[key]
		if ok && v.err != "" {
			ps.addLine(v.line, key, "%s", v.err)
			return silentVar{}, false
		}
		return v, ok
	}
	im := &Import{Sources: []string{name}}
	c := &Cluster{Name: DefaultImportCluster, Ports: map[string]PortRange{}, Mesh: Mesh{Enabled: true}, ACL: ACL{Enabled: true}}
	im.Cluster = c

	// Hosts and components.
	all, ok := get("ALL_IP")
	if !ok || strings.TrimSpace(all.value) == "" {
		if _, present := vars["ALL_IP"]; !present {
			ps.addLine(0, "ALL_IP", "ALL_IP is missing: it must list every host of the region")
		}
	}
	byIP := map[netip.Addr]*Node{}
	var hosts []netip.Addr // ALL_IP order
	for _, ip := range ipList(ps, "ALL_IP", all) {
		if _, dup := byIP[ip]; dup {
			ps.addLine(all.line, "ALL_IP", "%s is listed twice: list each host once", ip)
			continue
		}
		byIP[ip] = &Node{Name: NodeNameForIP(ip), Address: ip.String(), Components: []Component{}}
		hosts = append(hosts, ip)
	}
	for _, hl := range apigeeHostLists {
		v, ok := get(hl.key)
		if !ok {
			continue
		}
		for _, ip := range ipList(ps, hl.key, v) {
			n, ok := byIP[ip]
			if !ok {
				if all.line > 0 || all.value != "" {
					ps.addLine(v.line, hl.key, "%s is not in ALL_IP: add it to ALL_IP or remove it from %s", ip, hl.key)
				}
				continue
			}
			if !n.Has(hl.comp) {
				n.Components = append(n.Components, hl.comp)
			}
		}
	}
	for _, n := range byIP {
		sort.SliceStable(n.Components, func(i, j int) bool {
			return componentIndex(n.Components[i]) < componentIndex(n.Components[j])
		})
	}
	regions := im.regions(ps, vars, get, byIP, hosts)
	fields := map[string]string{} // cluster-file field → silent-config key
	for i, r := range regions {
		dp := fmt.Sprintf("datacenters[%d]", i)
		dc := Datacenter{Name: r.name}
		ps.lines[dp+".name"] = r.line
		fields[dp+".name"] = r.key
		ps.lines[dp] = vars["ZK_MTLS_HOSTS"].line // where servers are listed
		fields[dp] = "ZK_MTLS_HOSTS"
		for _, ip := range r.hosts {
			path := fmt.Sprintf("%s.nodes[%d]", dp, len(dc.Nodes))
			ps.lines[path] = r.hostsLine
			fields[path] = r.hostsKey
			dc.Nodes = append(dc.Nodes, byIP[ip])
		}
		if len(dc.Nodes) > 0 {
			c.Datacenters = append(c.Datacenters, dc)
		}
	}

	// Port ranges.
	for _, pn := range apigeePortNames {
		minKey := "SMI_PROXY_MINIMUM_" + pn.x + "_PROXY_PORT"
		maxKey := "SMI_PROXY_MAXIMUM_" + pn.x + "_PROXY_PORT"
		r := defaultRanges[pn.key]
		minSet, maxSet := false, false
		line := 0
		if v, ok := get(minKey); ok {
			if p, ok := silentPort(ps, minKey, v); ok {
				r.Min, minSet, line = p, true, v.line
			}
		}
		if v, ok := get(maxKey); ok {
			if p, ok := silentPort(ps, maxKey, v); ok {
				r.Max, maxSet = p, true
				if line == 0 {
					line = v.line
				}
			}
		}
		if !minSet && !maxSet {
			continue
		}
		if r.Min > r.Max {
			switch {
			case minSet && maxSet:
				ps.addLine(line, minKey, "minimum %d is above maximum %d (%s): swap them or fix the typo", r.Min, r.Max, maxKey)
			case minSet:
				ps.addLine(line, minKey, "minimum %d is above the default maximum %d: set %s too", r.Min, r.Max, maxKey)
			default:
				ps.addLine(line, maxKey, "maximum %d is below the default minimum %d: set %s too", r.Max, r.Min, minKey)
			}
			continue
		}
		c.Ports[pn.key] = r
		ps.lines["ports."+pn.key] = line
	}

	// Credentials and certificate settings.
	if v, ok := get("ENCRYPT_DATA"); ok && v.value != "" {
		if err := checkGossipKey(v.value); err != nil {
			ps.addLine(v.line, "ENCRYPT_DATA", "%v", err)
		}
		im.GossipKey = v.value
	}
	if v, ok := get("PATH_TO_CA_CERT"); ok {
		im.CACertPath = v.value
	}
	if v, ok := get("PATH_TO_CA_KEY"); ok {
		im.CAKeyPath = v.value
	}
	if (im.CACertPath == "") != (im.CAKeyPath == "") {
		im.Warnings = append(im.Warnings, fmt.Sprintf("%s: only one of PATH_TO_CA_CERT and PATH_TO_CA_KEY is set: import the CA with both, or let mtlsctl create one", name))
	}
	if v, ok := get("APIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR"); ok && v.value != "" {
		days, err := strconv.Atoi(strings.TrimSpace(v.value))
		if err != nil || days < 1 || days > MaxCertDays {
			ps.addLine(v.line, "APIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR", "%q is not a number of days from 1 to %d", v.value, MaxCertDays)
		} else {
			c.Certs.Days = days
		}
	}

	// Mesh settings.
	if v, ok := get("MTLS_ENCAPSULATE_LDAP"); ok && isNo(v.value) {
		// LDAP stays outside the mesh: mesh.encapsulate_ldap false.
		c.Mesh.LDAPOutside = true
	}
	if v, ok := get("ENABLE_SIDECAR_PROXY"); ok && isNo(v.value) {
		// No sidecar proxies is mtlsctl's mesh switched off: Consul
		// agents with TLS and gossip encryption, no proxies, nat rules
		// or intentions.
		c.Mesh.Enabled = false
	}

	if ps.err() != nil {
		return nil, ps.err()
	}
	if _, err := validate(c, ps); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			for i := range ve.Problems {
				ve.Problems[i].Field = silentField(ve.Problems[i].Field, fields)
			}
		}
		return nil, err
	}
	im.Warnings = append(im.Warnings, im.remoteWarnings()...)
	return im, nil
}

// silentField names the silent-config property behind a cluster-file field,
// so that problems found by validation point at what the user wrote.
func silentField(field string, fields map[string]string) string {
	if key, ok := fields[field]; ok {
		return key
	}
	switch {
	case strings.HasPrefix(field, "ports."):
		key := strings.TrimPrefix(field, "ports.")
		for _, pn := range apigeePortNames {
			if pn.key == key {
				return "SMI_PROXY_MINIMUM_" + pn.x + "_PROXY_PORT"
			}
		}
	}
	return field
}

// remoteWarnings notes the remote regions that are not part of the import.
func (im *Import) remoteWarnings() []string {
	var out []string
	for _, rr := range im.remotes {
		var dc *Datacenter
		for i := range im.Cluster.Datacenters {
			if im.Cluster.Datacenters[i].Name == rr.name {
				dc = &im.Cluster.Datacenters[i]
			}
		}
		if dc == nil {
			hosts := ""
			if len(rr.ips) > 0 {
				hosts = " (" + strings.Join(rr.ips, " ") + ")"
			}
			out = append(out, fmt.Sprintf("%s: remote region %s%s is not imported: import its silent config too (import-apigee %s OTHER.conf) to add its nodes", rr.source, rr.name, hosts, rr.source))
			continue
		}
		for _, ip := range rr.ips {
			found := false
			for _, n := range dc.Nodes {
				found = found || n.Address == ip
			}
			if !found {
				out = append(out, fmt.Sprintf("%s: remote region %s's IP %s is not one of its nodes", rr.source, rr.name, ip))
			}
		}
	}
	return out
}

// MergeImports combines the imports of several silent configs (one per
// region, as Apigee installs multi-DC clusters) into one cluster with a
// datacenter per import, in order. Regions must differ, and the settings that
// are cluster-wide (port ranges, gossip key, CA paths, certificate validity)
// must agree where set.
func MergeImports(imports ...*Import) (*Import, error) {
	if len(imports) == 0 {
		return nil, fmt.Errorf("merge imports: nothing to merge")
	}
	first := imports[0]
	out := &Import{Cluster: &Cluster{Name: first.Cluster.Name, Ports: map[string]PortRange{}, Mesh: Mesh{Enabled: true}, ACL: ACL{Enabled: true}}}
	ps := newProblems("")
	from := map[string]string{} // setting → source that set it
	agree := func(setting string, dst *string, val, src string, secret bool) {
		if val == "" {
			return
		}
		if *dst == "" {
			*dst, from[setting] = val, src
			return
		}
		if *dst != val {
			if secret {
				ps.add(setting, "%s and %s set different values: the cluster has one, make them equal", from[setting], src)
			} else {
				ps.add(setting, "%s sets %q but %s sets %q: the cluster has one, make them equal", from[setting], *dst, src, val)
			}
		}
	}
	var days, mesh, ldap string
	for _, im := range imports {
		if im == nil || im.Cluster == nil {
			continue
		}
		src := strings.Join(im.Sources, ", ")
		out.Sources = append(out.Sources, im.Sources...)
		out.Warnings = append(out.Warnings, im.nonRemoteWarnings()...)
		out.remotes = append(out.remotes, im.remotes...)
		agree("ENCRYPT_DATA", &out.GossipKey, im.GossipKey, src, true)
		agree("PATH_TO_CA_CERT", &out.CACertPath, im.CACertPath, src, false)
		agree("PATH_TO_CA_KEY", &out.CAKeyPath, im.CAKeyPath, src, false)
		if im.Cluster.Certs.Days != 0 {
			agree("APIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR", &days, strconv.Itoa(im.Cluster.Certs.Days), src, false)
		}
		agree("ENABLE_SIDECAR_PROXY", &mesh, yesNo(im.Cluster.Mesh.Enabled), src, false)
		agree("MTLS_ENCAPSULATE_LDAP", &ldap, yesNo(!im.Cluster.Mesh.LDAPOutside), src, false)
		for _, pn := range apigeePortNames {
			r, ok := im.Cluster.Ports[pn.key]
			if !ok {
				r = defaultRanges[pn.key]
			}
			s := r.String()
			cur := ""
			if have, ok := out.Cluster.Ports[pn.key]; ok {
				cur = have.String()
			}
			agree("SMI_PROXY_*_"+pn.x+"_PROXY_PORT", &cur, s, src, false)
			if _, ok := out.Cluster.Ports[pn.key]; !ok {
				out.Cluster.Ports[pn.key] = r
			}
		}
		for _, dc := range im.Cluster.Datacenters {
			// Each region's file describes every region: the same region
			// twice is fine as long as both files agree on it.
			if have := out.Cluster.datacenter(dc.Name); have != nil {
				if diff := sameHosts(have, &dc); diff != "" {
					ps.add("REGION", "%s and %s describe region %q differently (%s): make the files agree, or give each region's file its own REGION", from["region:"+dc.Name], src, dc.Name, diff)
				}
				continue
			}
			from["region:"+dc.Name] = src
			cp := Datacenter{Name: dc.Name}
			for _, n := range dc.Nodes {
				nn := *n
				nn.Components = append([]Component{}, n.Components...)
				cp.Nodes = append(cp.Nodes, &nn)
			}
			out.Cluster.Datacenters = append(out.Cluster.Datacenters, cp)
		}
	}
	out.Cluster.Certs.Days, _ = strconv.Atoi(days)
	out.Cluster.Mesh.Enabled = mesh != "n"
	out.Cluster.Mesh.LDAPOutside = ldap == "n"
	ps.file = strings.Join(out.Sources, ", ")
	if err := ps.err(); err != nil {
		return nil, err
	}
	if _, err := validate(out.Cluster, ps); err != nil {
		return nil, err
	}
	out.Warnings = append(out.Warnings, out.remoteWarnings()...)
	return out, nil
}

// datacenter returns c's datacenter called name, or nil.
func (c *Cluster) datacenter(name string) *Datacenter {
	for i := range c.Datacenters {
		if c.Datacenters[i].Name == name {
			return &c.Datacenters[i]
		}
	}
	return nil
}

// sameHosts compares two imports of one region: the same hosts running the
// same components. It returns what differs first, or "".
func sameHosts(a, b *Datacenter) string {
	byAddr := map[string]*Node{}
	for _, n := range a.Nodes {
		byAddr[n.Address] = n
	}
	for _, n := range b.Nodes {
		m, ok := byAddr[n.Address]
		switch {
		case !ok:
			return "host " + n.Address + " is in only one of them"
		case !slices.Equal(m.Components, n.Components):
			return "host " + n.Address + " runs different components"
		}
	}
	if len(a.Nodes) != len(b.Nodes) {
		return "one lists more hosts"
	}
	return ""
}

// nonRemoteWarnings drops the remote-region notes (recomputed after a merge).
func (im *Import) nonRemoteWarnings() []string {
	remote := map[string]bool{}
	for _, w := range im.remoteWarnings() {
		remote[w] = true
	}
	var out []string
	for _, w := range im.Warnings {
		if !remote[w] {
			out = append(out, w)
		}
	}
	return out
}

func componentIndex(c Component) int {
	for i, x := range Components {
		if x == c {
			return i
		}
	}
	return len(Components)
}

func isYes(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "y", "yes", "true", "1", "on":
		return true
	}
	return false
}

func yesNo(b bool) string {
	if b {
		return "y"
	}
	return "n"
}

func isNo(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "n", "no", "false", "0", "off":
		return true
	}
	return false
}

func sortedKeys(m map[string]silentVar) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkGossipKey checks a Consul gossip key without revealing it.
func checkGossipKey(k string) error {
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return fmt.Errorf("gossip key is not standard base64 (make one with consul keygen)")
	}
	switch len(b) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("gossip key decodes to %d bytes, Consul needs 32 (or 16 or 24): make one with consul keygen", len(b))
}

// ipList parses a space-separated list of IPs, reporting bad entries.
func ipList(ps *problems, key string, v silentVar) []netip.Addr {
	var out []netip.Addr
	for _, f := range strings.Fields(strings.ReplaceAll(v.value, ",", " ")) {
		ip, err := parseIP(f)
		if err != nil {
			ps.addLine(v.line, key, "%v", err)
			continue
		}
		out = append(out, ip)
	}
	return out
}

func silentPort(ps *problems, key string, v silentVar) (int, bool) {
	p, err := strconv.Atoi(strings.TrimSpace(v.value))
	if err != nil || p < 1 || p > 65535 {
		ps.addLine(v.line, key, "port %q is not a number from 1 to 65535", v.value)
		return 0, false
	}
	return p, true
}
