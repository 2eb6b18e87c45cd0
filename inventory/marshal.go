package inventory

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
)

// Marshal writes c as a clean cluster file: settings equal to their defaults
// are left out (except consul.version, always written), port ranges only where
// they differ from Apigee's defaults, the mesh block only with what differs
// from its defaults (enabled: false when the mesh is off), components and
// allow rules in flow style. Parse of the
// result gives back c (with defaults applied).
func Marshal(c *Cluster) ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("marshal: no cluster")
	}
	root := mapping()
	addStr(root, "cluster", c.Name)

	consul := mapping()
	version := c.Consul.Version
	if version == "" {
		version = DefaultConsulVersion
	}
	// Quoted, as the examples write it: an unquoted 1.10 would read as a number.
	add(consul, "version", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: version, Style: yaml.DoubleQuotedStyle})
	for _, kv := range []struct{ key, val, def string }{
		{"domain", c.Consul.Domain, DefaultDomain},
		{"config_dir", c.Consul.ConfigDir, DefaultConfigDir},
		{"tls_dir", c.Consul.TLSDir, DefaultTLSDir},
		{"data_dir", c.Consul.DataDir, DefaultDataDir},
		{"reload_command", c.Consul.ReloadCommand, DefaultReloadCommand},
		{"restart_command", c.Consul.RestartCommand, DefaultRestartCommand},
		{"user", c.Consul.User, ""},
		{"group", c.Consul.Group, ""},
		{"log_level", c.Consul.LogLevel, DefaultLogLevel},
	} {
		if kv.val != "" && kv.val != kv.def {
			addStr(consul, kv.key, kv.val)
		}
	}
	add(root, "consul", consul)

	ssh := mapping()
	if c.SSH.User != "" && c.SSH.User != DefaultSSHUser {
		addStr(ssh, "user", c.SSH.User)
	}
	if c.SSH.Port != 0 && c.SSH.Port != DefaultSSHPort {
		addInt(ssh, "port", c.SSH.Port)
	}
	for _, kv := range [][2]string{{"identity_file", c.SSH.IdentityFile}, {"known_hosts", c.SSH.KnownHosts}, {"bastion", c.SSH.Bastion}} {
		if kv[1] != "" {
			addStr(ssh, kv[0], kv[1])
		}
	}
	if c.SSH.Sudo {
		add(ssh, "sudo", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	if len(ssh.Content) > 0 {
		add(root, "ssh", ssh)
	}

	ports := mapping()
	for _, k := range PortKeys() {
		if r, ok := c.Ports[k]; ok && r != defaultRanges[k] {
			addStr(ports, k, r.String())
		}
	}
	if len(ports.Content) > 0 {
		add(root, "ports", ports)
	}
	if c.NodeStateDir != "" && c.NodeStateDir != DefaultNodeStateDir {
		addStr(root, "node_state_dir", c.NodeStateDir)
	}
	if c.Backups.Keep != 0 && c.Backups.Keep != DefaultBackupsKeep {
		b := mapping()
		addInt(b, "keep", c.Backups.Keep)
		add(root, "backups", b)
	}
	if c.Certs.Days != 0 {
		b := mapping()
		addInt(b, "days", c.Certs.Days)
		add(root, "certs", b)
	}
	if mesh := marshalMesh(c); len(mesh.Content) > 0 {
		add(root, "mesh", mesh)
	}

	acl := mapping()
	if !c.ACL.Enabled {
		add(acl, "enabled", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"})
	}
	if c.ACL.TokenDir != "" && c.ACL.TokenDir != DefaultTokenDir {
		addStr(acl, "token_dir", c.ACL.TokenDir)
	}
	if len(acl.Content) > 0 {
		add(root, "acl", acl)
	}

	if c.Sandbox != nil {
		sb := mapping()
		addStr(sb, "dir", c.Sandbox.Dir)
		add(root, "sandbox", sb)
	}

	dcs := &yaml.Node{Kind: yaml.SequenceNode}
	for _, dc := range c.Datacenters {
		dn := mapping()
		addStr(dn, "name", dc.Name)
		nodes := &yaml.Node{Kind: yaml.SequenceNode}
		for _, n := range dc.Nodes {
			if n == nil {
				continue
			}
			nn := mapping()
			addStr(nn, "name", n.Name)
			addStr(nn, "address", n.Address)
			comps := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, comp := range n.Components {
				comps.Content = append(comps.Content, str(string(comp)))
			}
			add(nn, "components", comps)
			if n.SSHHost != "" {
				addStr(nn, "ssh_host", n.SSHHost)
			}
			if n.SSHUser != "" {
				addStr(nn, "ssh_user", n.SSHUser)
			}
			if n.SSHPort != 0 {
				addInt(nn, "ssh_port", n.SSHPort)
			}
			nodes.Content = append(nodes.Content, nn)
		}
		add(dn, "nodes", nodes)
		dcs.Content = append(dcs.Content, dn)
	}
	add(root, "datacenters", dcs)

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("marshal cluster %q: %w", c.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal cluster %q: %w", c.Name, err)
	}
	return buf.Bytes(), nil
}

// marshalMesh gives the mesh block's settings that differ from the defaults.
func marshalMesh(c *Cluster) *yaml.Node {
	m := &c.Mesh
	out := mapping()
	if !m.Enabled {
		add(out, "enabled", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"})
	}
	if m.LDAPOutside {
		add(out, "encapsulate_ldap", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "false"})
	}
	for _, kv := range []struct{ key, val, def string }{
		{"unit_dir", m.UnitDir, DefaultUnitDir},
		{"consul_binary", m.ConsulBinary, DefaultConsulBinary},
		{"proxy_user", m.ProxyUser, defaultProxyUser(c)},
	} {
		if kv.val != "" && kv.val != kv.def {
			addStr(out, kv.key, kv.val)
		}
	}
	if len(m.Allow) > 0 {
		allow := &yaml.Node{Kind: yaml.SequenceNode}
		for _, r := range m.Allow {
			rn := mapping()
			rn.Style = yaml.FlowStyle
			addStr(rn, "from", string(r.From))
			addStr(rn, "to", string(r.To))
			allow.Content = append(allow.Content, rn)
		}
		add(out, "allow", allow)
	}
	return out
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func str(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }

func add(m *yaml.Node, key string, v *yaml.Node) { m.Content = append(m.Content, str(key), v) }

func addStr(m *yaml.Node, key, v string) { add(m, key, str(v)) }

func addInt(m *yaml.Node, key string, v int) {
	add(m, key, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(v)})
}

// Describe writes a readable, deterministic summary of the topology: the
// cluster settings, then one row per node (datacenter, name, address, whether
// it runs a Consul server, components).
func (t *Topology) Describe(w io.Writer) error {
	c := t.Cluster
	var b bytes.Buffer
	fmt.Fprintf(&b, "cluster %s: Consul %s, domain %s, %d datacenter(s), %d node(s)\n",
		c.Name, c.Consul.Version, c.Consul.Domain, len(c.Datacenters), len(t.Nodes))
	for _, dc := range c.Datacenters {
		names := make([]string, 0, MinServers)
		for _, s := range t.Servers(dc.Name) {
			names = append(names, s.Name)
		}
		fmt.Fprintf(&b, "  %s: %d node(s), Consul servers: %s\n", dc.Name, len(dc.Nodes), strings.Join(names, ", "))
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DATACENTER\tNODE\tADDRESS\tSERVER\tCOMPONENTS")
	for _, n := range t.Nodes {
		server := "-"
		if n.IsServer() {
			server = "yes"
		}
		comps := make([]string, len(n.Components))
		for i, comp := range n.Components {
			comps[i] = string(comp)
		}
		list := strings.Join(comps, ", ")
		if list == "" {
			list = "-"
		}
		addr := n.Address
		if n.SSHHost != "" && n.SSHHost != n.Address {
			addr += " (ssh " + n.SSHHost + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Datacenter, n.Name, addr, server, list)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
