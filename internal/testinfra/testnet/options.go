package testnet

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// DefaultSubnet is the network used when Options.Subnet is empty. It lies in
// 198.18.0.0/15, the range reserved for benchmarking (RFC 2544), so it never
// collides with a real network.
const DefaultSubnet = "198.18.0.0/24"

// DefaultNodes is the number of nodes when neither Options.Nodes nor
// Options.Names is set.
const DefaultNodes = 3

// SudoUserName is the second login user created when Options.SudoUser is set.
const SudoUserName = "mtlsuser"

// BinDir is the directory, private to each node, that holds the systemctl
// stand-in. It comes first on PATH for sshd sessions, for Exec and Start, and
// in sudo's secure_path for SudoUserName.
const BinDir = "/run/testnet/bin"

// maxPrefixLen keeps "<prefix>-h", the root-side interface name, within
// Linux's 15-character limit for interface names.
const maxPrefixLen = 10

// firstNodeHost is the host number of node 1 inside the subnet (.11); the
// admin side is host number 1.
const firstNodeHost = 11

// DefaultUnitDir is the node path of the unit-file directory when
// Options.UnitDir is empty.
const DefaultUnitDir = "/etc/systemd/system"

// ErrInvalidOptions is wrapped by every error about bad Options.
var ErrInvalidOptions = errors.New("testnet: invalid options")

// DefaultPrivateDirs returns the node paths that are private to each node
// when Options.PrivateDirs is nil. /root is among them so that each node has
// its own root home (its own ~/.ssh) and the host's shell startup files,
// which bash reads for every ssh command, do not run inside nodes.
func DefaultPrivateDirs() []string {
	return []string{"/etc/consul.d", "/etc/mtlsctl", "/opt/consul", "/root", "/var/lib/mtlsctl"}
}

// Options says what New builds. The zero value means three nodes n1..n3 on
// DefaultSubnet with DefaultPrivateDirs and a prefix derived from the test
// name.
type Options struct {
	// Nodes is the number of nodes, named n1, n2, ...; ignored when Names is
	// set. Zero means DefaultNodes.
	Nodes int
	// Names are the node names, in order (node i gets host number 10+i).
	Names []string
	// Subnet is an IPv4 prefix; the admin gets host 1, nodes 11, 12, ...
	Subnet string
	// Prefix names the namespaces (<prefix>-br, <prefix>-1, ...) and the
	// root-side interface (<prefix>-h): at most 10 characters of [a-z0-9],
	// starting with a letter. Leftovers with the same prefix from a crashed
	// run are removed by New. Empty means "tn" plus a hash of the test name.
	Prefix string
	// PrivateDirs are absolute node paths that each node gets its own empty
	// copy of (bind mounts in the node's mount namespace). nil means
	// DefaultPrivateDirs; missing mountpoints are created (empty) on the host
	// and left there.
	PrivateDirs []string
	// SudoUser also lets SudoUserName log in (same client key) with
	// passwordless sudo, through a sudoers drop-in removed at cleanup. The
	// user account is global to the machine and stays; its home is private
	// to each node.
	SudoUser bool
	// Services are the units the systemctl stand-in manages on every node.
	// They win over a unit file of the same name.
	Services map[string]ServiceDef
	// UnitDir is the node path where the systemctl stand-in looks for unit
	// files (<UnitDir>/<unit>.service) of units that are not Services. It
	// is always private to each node, like PrivateDirs, so unit files
	// written on one node stay there and never reach the host's real unit
	// directory. Empty means DefaultUnitDir.
	UnitDir string
	// ReadyTimeout bounds the wait for each sshd to accept TCP connections.
	// Zero means 10s.
	ReadyTimeout time.Duration
}

// config is Options after defaults and validation.
type config struct {
	names        []string
	subnet       netip.Prefix
	admin        netip.Addr
	addrs        []netip.Addr
	prefix       string
	privateDirs  []string
	sudoUser     bool
	services     map[string]ServiceDef
	unitDir      string
	readyTimeout time.Duration
}

var (
	prefixRE  = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	serviceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]*$`)
)

// defaultPrefix derives a short, stable prefix from the test name, so that a
// crashed run's leftovers are found again by the next run of the same test.
func defaultPrefix(testName string) string {
	h := fnv.New32a()
	h.Write([]byte(testName))
	return fmt.Sprintf("tn%06x", h.Sum32()&0xffffff)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
}

// normalize applies defaults and validates o.
func (o Options) normalize(testName string) (*config, error) {
	c := &config{sudoUser: o.SudoUser, readyTimeout: o.ReadyTimeout}
	if c.readyTimeout <= 0 {
		c.readyTimeout = 10 * time.Second
	}

	switch {
	case len(o.Names) > 0:
		c.names = slices.Clone(o.Names)
	case o.Nodes < 0:
		return nil, invalid("Nodes is %d; give a positive count", o.Nodes)
	default:
		count := o.Nodes
		if count == 0 {
			count = DefaultNodes
		}
		for i := 1; i <= count; i++ {
			c.names = append(c.names, fmt.Sprintf("n%d", i))
		}
	}
	seen := make(map[string]int, len(c.names))
	for i, name := range c.names {
		if !nameRE.MatchString(name) {
			return nil, invalid("node name %q (Names[%d]) must match %s", name, i, nameRE)
		}
		if j, dup := seen[name]; dup {
			return nil, invalid("node name %q is used twice (Names[%d] and Names[%d])", name, j, i)
		}
		seen[name] = i
	}

	c.prefix = o.Prefix
	if c.prefix == "" {
		c.prefix = defaultPrefix(testName)
	}
	if len(c.prefix) > maxPrefixLen || !prefixRE.MatchString(c.prefix) {
		return nil, invalid("Prefix %q must be 1-%d characters of [a-z0-9] starting with a letter (it names interfaces, limited to 15 characters)", c.prefix, maxPrefixLen)
	}

	subnet := o.Subnet
	if subnet == "" {
		subnet = DefaultSubnet
	}
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() {
		return nil, invalid("Subnet %q must be an IPv4 prefix such as %s", subnet, DefaultSubnet)
	}
	if p.Masked() != p {
		return nil, invalid("Subnet %q has host bits set; use %s", subnet, p.Masked())
	}
	c.subnet = p
	hosts := 1<<(32-p.Bits()) - 2 // minus network and broadcast
	if need := firstNodeHost - 1 + len(c.names); need > hosts {
		return nil, invalid("Subnet %s has room for %d nodes (from host .%d), not %d; use a larger subnet", p, max(hosts-firstNodeHost+1, 0), firstNodeHost, len(c.names))
	}
	c.admin = hostAddr(p, 1)
	for i := range c.names {
		c.addrs = append(c.addrs, hostAddr(p, firstNodeHost+i))
	}

	dirs := o.PrivateDirs
	if dirs == nil {
		dirs = DefaultPrivateDirs()
	}
	unitDir := o.UnitDir
	if unitDir == "" {
		unitDir = DefaultUnitDir
	}
	for i, d := range append(slices.Clone(dirs), unitDir) {
		field := "PrivateDirs entry"
		if i == len(dirs) {
			field = "UnitDir"
		}
		clean := path.Clean(d)
		if !path.IsAbs(d) || clean == "/" || strings.ContainsAny(d, " \t\n'\"\\") {
			return nil, invalid("%s %q must be an absolute directory other than / without spaces or quotes", field, d)
		}
		if clean == BinDir {
			return nil, invalid("%s %q is reserved for the systemctl stand-in", field, d)
		}
		if !slices.Contains(c.privateDirs, clean) {
			c.privateDirs = append(c.privateDirs, clean)
		}
	}
	c.unitDir = path.Clean(unitDir)
	if c.sudoUser {
		home := "/home/" + SudoUserName
		if !slices.Contains(c.privateDirs, home) {
			c.privateDirs = append(c.privateDirs, home)
		}
	}
	c.privateDirs = append(c.privateDirs, BinDir)
	// Parents first, so that a nested private dir is mounted inside its
	// parent's per-node copy.
	slices.Sort(c.privateDirs)

	c.services = make(map[string]ServiceDef, len(o.Services))
	for name, def := range o.Services {
		if err := def.validate(name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
		}
		c.services[name] = def
	}
	return c, nil
}

// hostAddr returns the n-th address of p.
func hostAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
