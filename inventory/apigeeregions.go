package inventory

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// importRegion is one datacenter of an import: its name, the hosts of
// ALL_IP that belong to it, and the properties that said so (for messages).
type importRegion struct {
	name string
	key  string // REGION or MTLS_REMOTE_REGION_<N>_NAME
	line int
	// hosts are in ALL_IP order; hostsKey is the list that put them there.
	hosts     []netip.Addr
	hostsKey  string
	hostsLine int
}

// regions splits the hosts of ALL_IP into datacenters, as Apigee's
// multi-region silent configs are written: one file per region, each with
// ALL_IP (and every *_MTLS_HOSTS) listing the hosts of every region, REGION
// naming this one, and MTLS_LOCAL_REGION_IP and MTLS_REMOTE_REGION_<N>_IP
// listing which hosts are where. Either region's file alone gives every
// datacenter. Without MTLS_LOCAL_REGION_IP all hosts go into one
// datacenter, REGION (default dc-1).
func (im *Import) regions(ps *problems, vars map[string]silentVar, get func(string) (silentVar, bool), byIP map[netip.Addr]*Node, hosts []netip.Addr) []importRegion {
	all := vars["ALL_IP"]
	local := importRegion{name: "dc-1", key: "REGION", hostsKey: "ALL_IP", hostsLine: all.line}
	if v, ok := get("REGION"); ok && strings.TrimSpace(v.value) != "" {
		local.name, local.line = regionName(ps, "REGION", v), v.line
	}
	mv, _ := get("APIGEE_MTLS_MULTI_DC_ENABLE")
	multi := isYes(mv.value)

	// The remote regions, in the order of their numbers.
	type remote struct {
		importRegion
		ips  silentVar
		has  bool
		ipOK bool
	}
	var remotes []remote
	for _, key := range sortedKeys(vars) {
		m := remoteNameRE.FindStringSubmatch(key)
		if m == nil {
			continue
		}
		nv, ok := get(key)
		if !ok || strings.TrimSpace(nv.value) == "" {
			continue
		}
		r := remote{importRegion: importRegion{name: regionName(ps, key, nv), key: key, line: nv.line}}
		r.hostsKey = "MTLS_REMOTE_REGION_" + m[1] + "_IP"
		r.ips, r.has = vars[r.hostsKey]
		_, r.ipOK = get(r.hostsKey)
		r.has = r.has && r.ipOK && strings.TrimSpace(r.ips.value) != ""
		r.hostsLine = r.ips.line
		remotes = append(remotes, r)
	}
	sort.SliceStable(remotes, func(i, j int) bool { return regionNumber(remotes[i].key) < regionNumber(remotes[j].key) })
	if mv.line > 0 && multi && local.line == 0 {
		im.Warnings = append(im.Warnings, fmt.Sprintf("%s:%d: APIGEE_MTLS_MULTI_DC_ENABLE is set but REGION is not: the datacenter is named %s", ps.file, mv.line, local.name))
	}
	seen := map[string]string{local.name: "REGION"}
	for _, r := range remotes {
		if !multi {
			im.Warnings = append(im.Warnings, fmt.Sprintf("%s:%d: %s is set but APIGEE_MTLS_MULTI_DC_ENABLE is not y", ps.file, r.line, r.key))
		}
		if prev, dup := seen[r.name]; dup && r.name != "" {
			ps.addLine(r.line, r.key, "region %q is already named by %s: each region needs its own name", r.name, prev)
		}
		seen[r.name] = r.key
	}

	lv, ok := get("MTLS_LOCAL_REGION_IP")
	if !ok || strings.TrimSpace(lv.value) == "" {
		// One datacenter. A remote region listed by IP must not end up in it.
		local.hosts = hosts
		for _, r := range remotes {
			ips := ipList(ps, r.hostsKey, r.ips)
			for _, ip := range ips {
				if _, in := byIP[ip]; in {
					ps.addLine(r.ips.line, r.hostsKey, "%s is in ALL_IP, but MTLS_LOCAL_REGION_IP is not set, so ALL_IP cannot be split into regions: list this region's hosts in MTLS_LOCAL_REGION_IP", ip)
					break
				}
			}
			rr := remoteRegion{name: r.name, source: ps.file}
			for _, ip := range ips {
				rr.ips = append(rr.ips, ip.String())
			}
			im.remotes = append(im.remotes, rr)
		}
		return []importRegion{local}
	}

	if !multi {
		im.Warnings = append(im.Warnings, fmt.Sprintf("%s:%d: MTLS_LOCAL_REGION_IP is set but APIGEE_MTLS_MULTI_DC_ENABLE is not y: the hosts are split into regions anyway", ps.file, lv.line))
	}
	local.hostsKey, local.hostsLine = "MTLS_LOCAL_REGION_IP", lv.line
	owner := map[netip.Addr]string{}
	claim := func(key string, v silentVar) {
		for _, ip := range ipList(ps, key, v) {
			switch prev, dup := owner[ip]; {
			case byIP[ip] == nil:
				ps.addLine(v.line, key, "%s is not in ALL_IP: add it to ALL_IP (which lists the hosts of every region) or remove it from %s", ip, key)
			case dup && prev == key:
				ps.addLine(v.line, key, "%s is listed twice: list each host once", ip)
			case dup:
				ps.addLine(v.line, key, "%s is also in %s: a host belongs to one region, remove it from one list", ip, prev)
			default:
				owner[ip] = key
			}
		}
	}
	claim(local.hostsKey, lv)
	var keys []string
	for _, r := range remotes {
		if !r.has {
			if r.ipOK {
				ps.addLine(r.line, r.key, "region %s has no %s: list its hosts there, so that ALL_IP can be split into regions", r.name, r.hostsKey)
			}
			continue
		}
		claim(r.hostsKey, r.ips)
		keys = append(keys, r.hostsKey)
	}
	for _, ip := range hosts {
		if _, ok := owner[ip]; !ok {
			ps.addLine(all.line, "ALL_IP", "%s is in no region's list: add it to MTLS_LOCAL_REGION_IP or to %s", ip, orList(append([]string{"MTLS_REMOTE_REGION_1_IP"}, keys...)))
		}
	}
	out := []importRegion{local}
	for _, r := range remotes {
		if r.has {
			out = append(out, r.importRegion)
		}
	}
	for i := range out {
		for _, ip := range hosts {
			if owner[ip] == out[i].hostsKey {
				out[i].hosts = append(out[i].hosts, ip)
			}
		}
	}
	return out
}

// regionName is a region's datacenter name: lowercased, and refused when it
// cannot be a DNS label (it goes into certificate names).
func regionName(ps *problems, key string, v silentVar) string {
	name := strings.ToLower(strings.TrimSpace(v.value))
	if msg := checkLabel(key, name); msg != "" {
		ps.addLine(v.line, key, "%s", msg)
	}
	return name
}

// regionNumber is the N of MTLS_REMOTE_REGION_<N>_NAME (large when absurd).
func regionNumber(key string) int {
	m := remoteNameRE.FindStringSubmatch(key)
	if m == nil {
		return 1 << 30
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 1 << 30
	}
	return n
}

// orList joins distinct names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	var uniq []string
	for _, n := range names {
		if !contains(uniq, n) {
			uniq = append(uniq, n)
		}
	}
	if len(uniq) <= 1 {
		return strings.Join(uniq, "")
	}
	return strings.Join(uniq[:len(uniq)-1], ", ") + " or " + uniq[len(uniq)-1]
}
