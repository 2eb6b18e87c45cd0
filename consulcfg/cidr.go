package consulcfg

import (
	"net/netip"
	"slices"
)

// coverPrefixes returns the fewest CIDR prefixes whose union is exactly the
// set addrs: no address outside the set is admitted. IPv4 and IPv6 are kept
// apart (an IPv4-mapped IPv6 address counts as IPv6, and zones are dropped);
// the result lists the IPv4 prefixes, then the IPv6 ones, each family in
// ascending address order, so the same set always gives the same list.
//
// The set splits into maximal runs of consecutive addresses; each run splits
// greedily into the largest aligned blocks it holds. No prefix inside the set
// can span two runs, and the aligned blocks of one run are fixed, so the
// result is minimal.
func coverPrefixes(addrs []netip.Addr) []netip.Prefix {
	sorted := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if a.IsValid() {
			sorted = append(sorted, a.WithZone(""))
		}
	}
	slices.SortFunc(sorted, netip.Addr.Compare) // IPv4 sorts before IPv6
	sorted = slices.Compact(sorted)

	var out []netip.Prefix
	for i := 0; i < len(sorted); {
		j := i // sorted[i..j] is a run of consecutive addresses
		for j+1 < len(sorted) && sorted[j].Next() == sorted[j+1] {
			j++
		}
		out = appendRange(out, sorted[i], sorted[j])
		i = j + 1
	}
	return out
}

// appendRange appends the fewest prefixes that cover first..last (same
// family, first <= last) exactly.
func appendRange(out []netip.Prefix, first, last netip.Addr) []netip.Prefix {
	for {
		// Widen the block at first while first stays its base address and
		// the block stays inside the range.
		p := netip.PrefixFrom(first, first.BitLen())
		for p.Bits() > 0 {
			wider := netip.PrefixFrom(first, p.Bits()-1).Masked()
			if wider.Addr() != first || lastAddr(wider).Compare(last) > 0 {
				break
			}
			p = wider
		}
		out = append(out, p)
		end := lastAddr(p)
		if end == last { // also stops before Next wraps past the family's top
			return out
		}
		first = end.Next()
	}
}

// lastAddr is the highest address of p (p masked).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	off := 0
	if p.Addr().Is4() {
		off = 12 // As16 puts IPv4 in the last 4 bytes
	}
	for bit := p.Bits(); bit < p.Addr().BitLen(); bit++ {
		a[off+bit/8] |= 0x80 >> (bit % 8)
	}
	if p.Addr().Is4() {
		return netip.AddrFrom4([4]byte(a[12:]))
	}
	return netip.AddrFrom16(a)
}
