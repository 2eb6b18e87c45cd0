package consulcfg

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestCoverPrefixes(t *testing.T) {
	tests := []struct {
		name string
		in   []netip.Addr
		want []string
	}{
		{"empty", nil, nil},
		{"one", addrs("10.0.0.1"), []string{"10.0.0.1/32"}},
		{"duplicates", addrs("10.0.0.1", "10.0.0.1"), []string{"10.0.0.1/32"}},
		{"aligned pair", addrs("10.0.0.2", "10.0.0.3"), []string{"10.0.0.2/31"}},
		{"unaligned pair", addrs("10.0.0.1", "10.0.0.2"), []string{"10.0.0.1/32", "10.0.0.2/32"}},
		{"gen-cluster start", addrs("198.18.0.11", "198.18.0.12", "198.18.0.13", "198.18.0.14", "198.18.0.15"),
			[]string{"198.18.0.11/32", "198.18.0.12/30"}},
		{"unsorted", addrs("10.0.0.15", "10.0.0.11", "10.0.0.13", "10.0.0.12", "10.0.0.14"),
			[]string{"10.0.0.11/32", "10.0.0.12/30"}},
		{"across an octet", addrs("10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"),
			[]string{"10.0.0.254/31", "10.0.1.0/31"}},
		{"a gap", addrs("10.0.0.0", "10.0.0.1", "10.0.0.3"), []string{"10.0.0.0/31", "10.0.0.3/32"}},
		{"bottom of IPv4", addrs("0.0.0.0", "0.0.0.1"), []string{"0.0.0.0/31"}},
		{"top of IPv4", addrs("255.255.255.254", "255.255.255.255"), []string{"255.255.255.254/31"}},
		{"top of IPv4 does not wrap", addrs("255.255.255.255", "0.0.0.0"), []string{"0.0.0.0/32", "255.255.255.255/32"}},
		{"families apart, IPv4 first", addrs("fd00::1", "10.0.0.1", "fd00::0", "::ffff:10.0.0.0"),
			[]string{"10.0.0.1/32", "::ffff:10.0.0.0/128", "fd00::/127"}},
		{"IPv4 top and IPv6 bottom are not adjacent", addrs("255.255.255.255", "::"), []string{"255.255.255.255/32", "::/128"}},
		{"top of IPv6", addrs("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
			[]string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"}},
		{"zone dropped", addrs("fe80::1%eth0", "fe80::1"), []string{"fe80::1/128"}},
		{"invalid ignored", []netip.Addr{{}, netip.MustParseAddr("10.0.0.1")}, []string{"10.0.0.1/32"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range coverPrefixes(tc.in) {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestCoverPrefixesExactSmall: for random subsets of small windows
// (including windows across octet boundaries and at the ends of each
// family), enumerating every address of every prefix gives back exactly the
// set, no prefix can be widened inside the set (so the list is minimal), and
// the order is deterministic.
func TestCoverPrefixesExactSmall(t *testing.T) {
	bases := addrs("10.0.0.0", "10.0.0.200", "198.18.0.11", "255.255.255.192", "0.0.0.0",
		"fd00::ff80", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffc0", "::")
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 2000 {
		base := bases[iter%len(bases)]
		set := map[netip.Addr]bool{}
		var in []netip.Addr
		density := r.Float64()
		for a, k := base, 0; a.IsValid() && k < 64; a, k = a.Next(), k+1 {
			if r.Float64() < density {
				set[a] = true
				in = append(in, a, a) // duplicates too
			}
		}
		r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		got := coverPrefixes(in)

		covered := map[netip.Addr]bool{}
		for _, p := range got {
			if p != p.Masked() {
				t.Fatalf("%v: prefix %v is not masked", base, p)
			}
			for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
				if !set[a] {
					t.Fatalf("%v: prefix %v admits %v, not in the set", base, p, a)
				}
				if covered[a] {
					t.Fatalf("%v: %v covered twice", base, a)
				}
				covered[a] = true
			}
			if p.Bits() > 0 {
				parent := netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()
				full := true
				for a := parent.Addr(); a.IsValid() && parent.Contains(a); a = a.Next() {
					full = full && set[a]
				}
				if full {
					t.Fatalf("%v: %v could be widened to %v: not minimal", base, p, parent)
				}
			}
		}
		if len(covered) != len(set) {
			t.Fatalf("%v: prefixes cover %d addresses, the set has %d", base, len(covered), len(set))
		}
		if !slices.IsSortedFunc(got, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) }) {
			t.Fatalf("%v: not in address order: %v", base, got)
		}
	}
}

// TestCoverPrefixesExactWide: random sets spread over each whole family,
// too wide to enumerate: the prefixes are ordered and disjoint, each holds
// exactly as many members as it has addresses (so nothing extra is
// admitted) with members at both ends, and together they hold every member.
func TestCoverPrefixesExactWide(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randAddr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			for i := range b {
				b[i] = byte(r.UintN(256))
			}
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{byte(r.UintN(256)), byte(r.UintN(256)), byte(r.UintN(256)), byte(r.UintN(256))})
	}
	for range 200 {
		var in []netip.Addr
		for range r.IntN(40) {
			// Runs of random length from random starts, like real subnets.
			a := randAddr(r.IntN(2) == 0)
			for range 1 + r.IntN(300) {
				if !a.IsValid() {
					break
				}
				in = append(in, a)
				a = a.Next()
			}
		}
		set := map[netip.Addr]bool{}
		sorted := slices.Clone(in)
		for _, a := range in {
			set[a] = true
		}
		slices.SortFunc(sorted, netip.Addr.Compare)
		sorted = slices.Compact(sorted)

		got := coverPrefixes(in)
		total := 0
		for i, p := range got {
			first, last := p.Addr(), lastAddr(p)
			if i > 0 && lastAddr(got[i-1]).Compare(first) >= 0 {
				t.Fatalf("%v overlaps or precedes %v", p, got[i-1])
			}
			lo, _ := slices.BinarySearchFunc(sorted, first, netip.Addr.Compare)
			hi, _ := slices.BinarySearchFunc(sorted, last.Next(), netip.Addr.Compare)
			if last.Next() == (netip.Addr{}) {
				hi = len(sorted)
			}
			host := p.Addr().BitLen() - p.Bits()
			if host > 20 || hi-lo != 1<<host {
				t.Fatalf("%v holds %d members, but has 2^%d addresses", p, hi-lo, host)
			}
			if !set[first] || !set[last] {
				t.Fatalf("%v: an end is not a member", p)
			}
			total += hi - lo
		}
		if total != len(sorted) {
			t.Fatalf("prefixes hold %d members, the set has %d", total, len(sorted))
		}
	}
}

func TestLastAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.0/8", "10.255.255.255"},
		{"10.0.0.12/30", "10.0.0.15"},
		{"10.0.0.1/32", "10.0.0.1"},
		{"0.0.0.0/0", "255.255.255.255"},
		{"fd00::/64", "fd00::ffff:ffff:ffff:ffff"},
		{"::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := lastAddr(netip.MustParsePrefix(tc.in)); got.String() != tc.want {
				t.Errorf("lastAddr(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}
