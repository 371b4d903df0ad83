//! Where redrive may send pushes. By default never to the machine itself or
//! its neighbours (loopback, private, link-local, multicast, unspecified):
//! a delivery service that anyone can point at `http://169.254.169.254/` is
//! a server-side request forgery gadget. Operators open chosen ranges with an
//! allow-list.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare
/// address is a network of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {input:?}: {reason}")]
pub struct NetworkParseError {
    pub input: String,
    pub reason: &'static str,
}

impl IpNetwork {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNetwork> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= max).then_some(IpNetwork { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: &[u8], ip: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if net[..full] != ip[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (net[full] & mask) == (ip[full] & mask)
}

impl FromStr for IpNetwork {
    type Err = NetworkParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| NetworkParseError {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| error("not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits
                    .parse::<u8>()
                    .map_err(|_| error("the prefix length is too large"))?
            }
            Some(_) => return Err(error("the prefix length must be a number")),
        };
        IpNetwork::new(addr, prefix).ok_or_else(|| {
            error(if max == 32 {
                "an IPv4 prefix length is at most 32"
            } else {
                "an IPv6 prefix length is at most 128"
            })
        })
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a comma-separated allow-list (`127.0.0.0/8,10.0.0.0/8`); blanks
/// between commas are ignored.
pub fn parse_networks(list: &str) -> Result<Vec<IpNetwork>, NetworkParseError> {
    list.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::parse)
        .collect()
}

/// The kind of address redrive refuses by default, if `ip` is one. An IPv6
/// address that embeds an IPv4 address is judged by what it embeds as well.
pub fn restricted_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => restricted_v4(ip),
        IpAddr::V6(ip) => restricted_v6(ip).or_else(|| {
            embedded_ipv4(ip)
                .into_iter()
                .find_map(|embedded| restricted_v4(embedded.ipv4))
        }),
    }
}

/// An IPv4 address carried inside an IPv6 address, and the form that
/// carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbeddedIpv4 {
    /// How the IPv6 address carries it (`"NAT64"`, `"6to4"`, …).
    pub form: &'static str,
    pub ipv4: Ipv4Addr,
}

/// Every IPv4 address `ip` may lead to through a translator, relay or
/// tunnel. Such an address reaches the IPv4 host it embeds wherever the
/// network routes the form (a NAT64 gateway, a 6to4 or Teredo relay, an
/// ISATAP router, a dual stack), so it must pass the same rules.
///
/// - IPv4-mapped `::ffff:0:0/96` and IPv4-compatible `::/96`: the last 32
///   bits (`::` and `::1` are IPv6's own unspecified and loopback);
/// - IPv4-translated `::ffff:0:0:0/96` (SIIT): the last 32 bits;
/// - NAT64 well-known prefix `64:ff9b::/96`: the last 32 bits;
/// - NAT64 local-use prefix `64:ff9b:1::/48`: the translator's prefix may be
///   /48, /56, /64 or /96 (RFC 6052 §2.2), each putting the address
///   elsewhere, so every one of those readings counts;
/// - 6to4 `2002::/16`: bits 16–47;
/// - Teredo `2001::/32`: the server (bits 32–63) and the client (the last
///   32 bits, inverted);
/// - ISATAP: an interface identifier `0000:5efe` or `0200:5efe` (the
///   universal/group bits aside) followed by the address.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Vec<EmbeddedIpv4> {
    let o = ip.octets();
    let v4 = |a: u8, b: u8, c: u8, d: u8| Ipv4Addr::new(a, b, c, d);
    let last = v4(o[12], o[13], o[14], o[15]);
    let one = |form, ipv4| vec![EmbeddedIpv4 { form, ipv4 }];
    let zeros = |range: std::ops::Range<usize>| o[range].iter().all(|b| *b == 0);
    if zeros(0..10) && o[10] == 0xff && o[11] == 0xff {
        return one("IPv4-mapped", last);
    }
    if zeros(0..12) {
        // `::` and `::1` are IPv6's own; restricted_v6 names them.
        return one("IPv4-compatible", last);
    }
    if zeros(0..8) && o[8] == 0xff && o[9] == 0xff && o[10] == 0 && o[11] == 0 {
        return one("IPv4-translated", last);
    }
    if o[..4] == [0x00, 0x64, 0xff, 0x9b] && zeros(4..12) {
        return one("NAT64", last);
    }
    if o[..6] == [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01] {
        // Byte 8 is RFC 6052's reserved "u" octet, never part of the address.
        return [
            v4(o[6], o[7], o[9], o[10]),
            v4(o[7], o[9], o[10], o[11]),
            v4(o[9], o[10], o[11], o[12]),
            last,
        ]
        .into_iter()
        .map(|ipv4| EmbeddedIpv4 {
            form: "local-use NAT64",
            ipv4,
        })
        .collect();
    }
    if o[..2] == [0x20, 0x02] {
        return one("6to4", v4(o[2], o[3], o[4], o[5]));
    }
    if o[..4] == [0x20, 0x01, 0x00, 0x00] {
        return vec![
            EmbeddedIpv4 {
                form: "Teredo (server)",
                ipv4: v4(o[4], o[5], o[6], o[7]),
            },
            EmbeddedIpv4 {
                form: "Teredo (client)",
                ipv4: v4(!o[12], !o[13], !o[14], !o[15]),
            },
        ];
    }
    if o[8] & 0xfc == 0 && o[9] == 0 && o[10] == 0x5e && o[11] == 0xfe {
        return one("ISATAP", last);
    }
    Vec::new()
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast")
    } else if a == 0 {
        // 0.0.0.0/8 means "this host" to most stacks.
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        // Carrier-grade NAT space is as internal as RFC 1918 in practice.
        Some("private")
    } else {
        None
    }
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        // Unique-local (fc00::/7) and the deprecated site-local fec0::/10.
        Some("private")
    } else {
        None
    }
}

/// Why an endpoint is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "{ip} is a {kind} address; redrive does not deliver to {kind} addresses \
         unless --allow-endpoint-networks includes it"
    )]
    Restricted { ip: IpAddr, kind: &'static str },
    #[error(
        "{ip} is a {form} address that reaches {ipv4}, a {kind} address; redrive does not \
         deliver to {kind} addresses unless --allow-endpoint-networks includes it"
    )]
    Embedded {
        ip: IpAddr,
        form: &'static str,
        ipv4: Ipv4Addr,
        kind: &'static str,
    },
    #[error(
        "{host:?} always means this machine (loopback); redrive does not deliver there \
             unless --allow-endpoint-networks includes 127.0.0.1"
    )]
    LocalName { host: String },
    #[error("this server accepts only https endpoints (--endpoint-https-only)")]
    NotHttps,
}

/// The operator's rules for endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Ranges allowed although restricted by default.
    pub allow: Vec<IpNetwork>,
    pub https_only: bool,
}

impl EndpointPolicy {
    /// May redrive connect to `ip`? An IPv6 address that embeds IPv4
    /// addresses passes only if each embedded address would pass too (or
    /// the allow-list names the IPv6 address itself).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), NetworkError> {
        if self.allows(ip) {
            return Ok(());
        }
        let v6 = match ip {
            IpAddr::V4(v4) => {
                return match restricted_v4(v4) {
                    Some(kind) => Err(NetworkError::Restricted { ip, kind }),
                    None => Ok(()),
                };
            }
            IpAddr::V6(v6) => v6,
        };
        if let Some(kind) = restricted_v6(v6) {
            return Err(NetworkError::Restricted { ip, kind });
        }
        for EmbeddedIpv4 { form, ipv4 } in embedded_ipv4(v6) {
            if let Some(kind) = restricted_v4(ipv4)
                && !self.allows(IpAddr::V4(ipv4))
            {
                return Err(NetworkError::Embedded {
                    ip,
                    form,
                    ipv4,
                    kind,
                });
            }
        }
        Ok(())
    }

    fn allows(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(ip))
    }

    /// May redrive use this URL scheme?
    pub fn check_scheme(&self, scheme: &str) -> Result<(), NetworkError> {
        if self.https_only && !scheme.eq_ignore_ascii_case("https") {
            return Err(NetworkError::NotHttps);
        }
        Ok(())
    }

    /// Host names that mean this machine whatever DNS says (RFC 6761):
    /// refused up front unless loopback is allowed.
    pub fn check_host_name(&self, host: &str) -> Result<(), NetworkError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return self
                .check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
                .map_err(|_| NetworkError::LocalName { host });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// IPv4 addresses in every range redrive refuses by default.
    fn forbidden_ipv4() -> impl Strategy<Value = Ipv4Addr> {
        let within = |base: u32, prefix: u32| {
            any::<u32>().prop_map(move |bits| {
                let host = if prefix == 32 { 0 } else { bits >> prefix };
                Ipv4Addr::from(base | host)
            })
        };
        prop_oneof![
            within(0x7f00_0000, 8),  // 127.0.0.0/8
            within(0x0a00_0000, 8),  // 10.0.0.0/8
            within(0xac10_0000, 12), // 172.16.0.0/12
            within(0xc0a8_0000, 16), // 192.168.0.0/16
            within(0x6440_0000, 10), // 100.64.0.0/10
            within(0xa9fe_0000, 16), // 169.254.0.0/16
            within(0xe000_0000, 4),  // multicast
            within(0x0000_0000, 8),  // 0.0.0.0/8
            Just(Ipv4Addr::BROADCAST),
            Just(Ipv4Addr::new(169, 254, 169, 254)),
        ]
    }

    /// `v4` in embedding `form`, with the form's free bits from `filler`.
    fn embed(form: usize, v4: Ipv4Addr, filler: u128) -> Ipv6Addr {
        let v4 = u128::from(u32::from(v4));
        let bits = match form {
            // IPv4-mapped ::ffff:0:0/96
            0 => 0xffff << 32 | v4,
            // IPv4-compatible ::/96
            1 => v4,
            // IPv4-translated ::ffff:0:0:0/96
            2 => 0xffff_0000 << 32 | v4,
            // NAT64 64:ff9b::/96
            3 => 0x0064_ff9b << 96 | v4,
            // NAT64 64:ff9b:1::/48 with a /96 translator prefix
            4 => 0x0064_ff9b_0001 << 80 | (filler & (((1 << 48) - 1) << 32)) | v4,
            // 6to4 2002::/16: subnet and interface bits are free
            5 => 0x2002 << 112 | v4 << 80 | (filler & ((1 << 80) - 1)),
            // Teredo server field; flags, port and client are free
            6 => 0x2001_0000 << 96 | v4 << 64 | (filler & ((1 << 64) - 1)),
            // Teredo client field, inverted; server, flags and port are free
            _ => 0x2001_0000 << 96 | (filler & (((1 << 64) - 1) << 32)) | (!v4 & 0xffff_ffff),
        };
        Ipv6Addr::from(bits)
    }

    #[test]
    fn restricted_addresses_are_named_by_kind() {
        for (addr, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("fd00::1", "private"),
            ("fc00::1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "multicast"),
            ("ff02::1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
        ] {
            assert_eq!(restricted_kind(ip(addr)), Some(kind), "{addr}");
        }
    }

    #[test]
    fn public_addresses_are_not_restricted() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(restricted_kind(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn the_allow_list_opens_only_its_ranges() {
        let policy = EndpointPolicy {
            allow: parse_networks("127.0.0.0/8, 10.0.0.0/8").unwrap(),
            https_only: false,
        };
        assert_eq!(policy.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check_ip(ip("10.9.9.9")), Ok(()));
        assert_eq!(
            policy.check_ip(ip("::1")),
            Err(NetworkError::Restricted {
                ip: ip("::1"),
                kind: "loopback"
            })
        );
        assert!(policy.check_ip(ip("192.168.0.1")).is_err());
        assert!(policy.check_ip(ip("169.254.169.254")).is_err());
        assert_eq!(policy.check_host_name("LocalHost."), Ok(()));
        assert!(
            EndpointPolicy::default()
                .check_host_name("api.localhost")
                .is_err()
        );
    }

    #[test]
    fn https_only_refuses_http() {
        let policy = EndpointPolicy {
            allow: vec![],
            https_only: true,
        };
        assert_eq!(policy.check_scheme("http"), Err(NetworkError::NotHttps));
        assert_eq!(policy.check_scheme("HTTPS"), Ok(()));
        assert_eq!(EndpointPolicy::default().check_scheme("http"), Ok(()));
    }

    #[test]
    fn networks_parse_and_print() {
        assert_eq!(
            "10.0.0.0/8".parse::<IpNetwork>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<IpNetwork>().unwrap().to_string(), "::1/128");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/x",
            "host/8",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<IpNetwork>().is_err(), "{bad:?}");
        }
        assert!(parse_networks(" , ").unwrap().is_empty());
    }

    #[test]
    fn prefix_lengths_cut_inside_an_octet() {
        let net: IpNetwork = "172.16.0.0/12".parse().unwrap();
        assert!(net.contains(ip("172.31.1.1")));
        assert!(!net.contains(ip("172.32.0.0")));
        assert!(!net.contains(ip("::1")));
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.7")));
    }

    #[test]
    fn ipv6_forms_embedding_a_forbidden_ipv4_address_are_refused() {
        let policy = EndpointPolicy::default();
        for (addr, form, ipv4, kind) in [
            ("64:ff9b::a00:1", "NAT64", "10.0.0.1", "private"),
            (
                "64:ff9b::a9fe:a9fe",
                "NAT64",
                "169.254.169.254",
                "link-local",
            ),
            ("64:ff9b::7f00:1", "NAT64", "127.0.0.1", "loopback"),
            ("::127.0.0.1", "IPv4-compatible", "127.0.0.1", "loopback"),
            (
                "::ffff:0:7f00:1",
                "IPv4-translated",
                "127.0.0.1",
                "loopback",
            ),
            (
                "::ffff:169.254.169.254",
                "IPv4-mapped",
                "169.254.169.254",
                "link-local",
            ),
            ("2002:7f00:1::", "6to4", "127.0.0.1", "loopback"),
            (
                "2002:a9fe:a9fe:1::5",
                "6to4",
                "169.254.169.254",
                "link-local",
            ),
            ("2001:0:a00:1::", "Teredo (server)", "10.0.0.1", "private"),
            // The client field is inverted: !127.0.0.1 = 128.255.255.254.
            (
                "2001:0:808:808::80ff:fffe",
                "Teredo (client)",
                "127.0.0.1",
                "loopback",
            ),
            (
                "64:ff9b:1::a00:1",
                "local-use NAT64",
                "0.0.0.0",
                "unspecified",
            ),
            (
                "64:ff9b:1:808:8:808:a00:1",
                "local-use NAT64",
                "10.0.0.1",
                "private",
            ),
            (
                "64:ff9b:1:a00:1:100::",
                "local-use NAT64",
                "10.0.1.1",
                "private",
            ),
            ("2606:4700:1::5efe:a00:1", "ISATAP", "10.0.0.1", "private"),
        ] {
            assert_eq!(
                policy.check_ip(ip(addr)),
                Err(NetworkError::Embedded {
                    ip: ip(addr),
                    form,
                    ipv4: ipv4.parse().unwrap(),
                    kind,
                }),
                "{addr}"
            );
            assert_eq!(restricted_kind(ip(addr)), Some(kind), "{addr}");
        }
        let message = policy
            .check_ip(ip("64:ff9b::a9fe:a9fe"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "64:ff9b::a9fe:a9fe is a NAT64 address that reaches 169.254.169.254, a link-local \
             address; redrive does not deliver to link-local addresses unless \
             --allow-endpoint-networks includes it"
        );
    }

    #[test]
    fn ipv6_forms_embedding_a_public_ipv4_address_pass() {
        let policy = EndpointPolicy::default();
        for addr in [
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "::ffff:0:808:808",
            "2002:808:808::1",
            // Teredo server 8.8.8.8, client !(f7f7:f7f7) = 8.8.8.8.
            "2001:0:808:808::f7f7:f7f7",
            "64:ff9b:1:808:808:808:808:808",
            "2606:4700::5efe:808:808",
        ] {
            assert_eq!(policy.check_ip(ip(addr)), Ok(()), "{addr}");
        }
        // IPv6's own loopback and unspecified keep their names.
        assert_eq!(restricted_kind(ip("::1")), Some("loopback"));
        assert_eq!(restricted_kind(ip("::")), Some("unspecified"));
    }

    #[test]
    fn allowing_the_embedded_ipv4_range_or_the_ipv6_address_opens_an_embedding() {
        let v4 = EndpointPolicy {
            allow: parse_networks("10.0.0.0/8").unwrap(),
            https_only: false,
        };
        assert_eq!(v4.check_ip(ip("64:ff9b::a00:1")), Ok(()));
        assert_eq!(v4.check_ip(ip("2002:a00:1::1")), Ok(()));
        // Both Teredo fields must pass: the client here is 127.0.0.1.
        assert!(v4.check_ip(ip("2001:0:a00:1::80ff:fffe")).is_err());
        let v6 = EndpointPolicy {
            allow: parse_networks("64:ff9b::/96").unwrap(),
            https_only: false,
        };
        assert_eq!(v6.check_ip(ip("64:ff9b::a9fe:a9fe")), Ok(()));
        assert!(v6.check_ip(ip("2002:a9fe:a9fe::")).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn every_embedding_of_a_forbidden_ipv4_address_is_refused(
            v4 in forbidden_ipv4(),
            form in 0usize..8,
            filler in any::<u128>(),
        ) {
            let v6 = embed(form, v4, filler);
            let refused = EndpointPolicy::default().check_ip(IpAddr::V6(v6));
            prop_assert!(refused.is_err(), "{} (form {}) embeds {} yet passed", v6, form, v4);
            prop_assert!(restricted_kind(IpAddr::V6(v6)).is_some());
        }

        #[test]
        fn an_embedding_passes_when_its_ipv4_range_is_allowed(
            v4 in forbidden_ipv4(),
            form in 0usize..8,
            filler in any::<u128>(),
        ) {
            let v6 = embed(form, v4, filler);
            // `::` and `::1` are IPv6's own unspecified and loopback.
            prop_assume!(restricted_v6(v6).is_none());
            // Embeddings with several readings (Teredo, local-use NAT64) may
            // carry another forbidden address in the filler: allow them all.
            let allowed: Vec<IpNetwork> = embedded_ipv4(v6)
                .iter()
                .map(|e| IpNetwork::new(IpAddr::V4(e.ipv4), 32).unwrap())
                .collect();
            prop_assert!(allowed.iter().any(|net| net.contains(IpAddr::V4(v4))));
            let policy = EndpointPolicy { allow: allowed, https_only: false };
            prop_assert_eq!(policy.check_ip(IpAddr::V6(v6)), Ok(()));
        }

        #[test]
        fn network_parser_never_panics(input in "\\PC{0,40}") {
            let _ = input.parse::<IpNetwork>();
            let _ = parse_networks(&input);
        }

        #[test]
        fn a_network_contains_its_own_address(a in any::<u32>(), prefix in 0u8..=32) {
            let addr = IpAddr::V4(Ipv4Addr::from(a));
            let net = IpNetwork::new(addr, prefix).unwrap();
            prop_assert!(net.contains(addr));
            let reparsed: IpNetwork = net.to_string().parse().unwrap();
            prop_assert_eq!(reparsed, net);
        }

        #[test]
        fn v6_networks_round_trip(a in any::<u128>(), prefix in 0u8..=128) {
            let addr = IpAddr::V6(Ipv6Addr::from(a));
            let net = IpNetwork::new(addr, prefix).unwrap();
            prop_assert!(net.contains(addr));
            let reparsed: IpNetwork = net.to_string().parse().unwrap();
            prop_assert_eq!(reparsed, net);
        }
    }
}
