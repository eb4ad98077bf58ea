package discovery

import "net/netip"

// blockedV4 lists the IPv4 special-purpose ranges (RFC 6890 and the IANA registry) that a
// discovery fetch must never reach: anything that is not ordinary globally routed unicast.
var blockedV4 = mustPrefixes(
	"0.0.0.0/8",       // "this network", includes 0.0.0.0
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // carrier-grade NAT
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, includes cloud metadata 169.254.169.254
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // TEST-NET-1
	"192.88.99.0/24",  // 6to4 relay anycast (deprecated)
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // TEST-NET-2
	"203.0.113.0/24",  // TEST-NET-3
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, includes broadcast 255.255.255.255
)

// blockedV6 lists IPv6 ranges inside global unicast 2000::/3 that are still special
// purpose. Everything outside 2000::/3 (loopback, ULA, link-local, multicast, ...) is
// refused before this list is consulted.
var blockedV6 = mustPrefixes(
	"2001::/23",     // IETF protocol assignments, includes Teredo 2001::/32
	"2001:db8::/32", // documentation
	"3fff::/20",     // documentation (RFC 9637)
)

var (
	global6   = netip.MustParsePrefix("2000::/3")
	nat64     = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64: embeds an IPv4 address
	sixToFour = netip.MustParsePrefix("2002::/16")    // 6to4: embeds an IPv4 address
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// IsPublicAddr reports whether a is an ordinary public unicast address that a discovery
// fetch may dial. IPv4-mapped IPv6 is unmapped first, and the IPv4 address embedded in
// NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses is checked too, so none of these
// spellings can smuggle a loopback or private target past the check.
func IsPublicAddr(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return publicV4(a)
	}
	switch {
	case nat64.Contains(a):
		b := a.As16()
		return publicV4(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	case sixToFour.Contains(a):
		b := a.As16()
		return publicV4(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
	case !global6.Contains(a):
		return false
	}
	for _, p := range blockedV6 {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

func publicV4(a netip.Addr) bool {
	for _, p := range blockedV4 {
		if p.Contains(a) {
			return false
		}
	}
	return true
}
