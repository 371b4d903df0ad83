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

/// The kind of address redrive refuses by default, if `ip` is one.
pub fn restricted_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => restricted_v4(ip),
        IpAddr::V6(ip) => {
            // An IPv4-mapped address reaches the IPv4 host it embeds.
            if let Some(v4) = ip.to_ipv4_mapped() {
                return restricted_v4(v4);
            }
            restricted_v6(ip)
        }
    }
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
    /// May redrive connect to `ip`?
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), NetworkError> {
        let Some(kind) = restricted_kind(ip) else {
            return Ok(());
        };
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = self
            .allow
            .iter()
            .any(|net| net.contains(ip) || mapped.is_some_and(|v4| net.contains(v4)));
        if allowed {
            Ok(())
        } else {
            Err(NetworkError::Restricted { ip, kind })
        }
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

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

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
