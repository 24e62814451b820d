//! SSRF policy: which IP addresses outbound deliveries may connect to.
//!
//! This module owns the decision only (pure, no I/O). The connector in `connector.rs` applies
//! it to every address a name resolves to, at connect time, so a DNS answer that changes
//! between validation and delivery (rebinding) cannot reach an internal address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::Deserialize;

/// An IP network in CIDR notation (`10.0.0.0/8`, `fc00::/7`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR `{0}`: expected ADDRESS/PREFIX such as 127.0.0.0/8 or fc00::/7")]
pub struct CidrParseError(String);

impl Cidr {
    /// Builds a network, or `None` when the prefix is longer than the address.
    pub const fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            None
        } else {
            Some(Self { addr, prefix })
        }
    }

    const fn v4(a: [u8; 4], prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// Whether `ip` lies in this network. IPv4 and IPv6 never match each other.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                self.prefix,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, width: u32) -> bool {
    let shift = width - u32::from(prefix);
    // `checked_shr` handles the /0 case, where the shift equals the width.
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| err())?;
                // Only plain decimal digits: `u8::from_str` would also take "+8".
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                (addr, p.parse::<u8>().map_err(|_| err())?)
            }
            None => {
                let addr: IpAddr = s.trim().parse().map_err(|_| err())?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        Cidr::new(addr, prefix).ok_or_else(err)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Networks no delivery may reach unless explicitly allowed, each with the reason shown in
/// errors. IPv4-mapped (`::ffff:a.b.c.d`) and NAT64 (`64:ff9b::a.b.c.d`) addresses are
/// judged by the IPv4 address they carry, before this list is consulted.
const DENIED: &[(Cidr, &str)] = &[
    (Cidr::v4([0, 0, 0, 0], 8), "\"this network\" / unspecified"),
    (Cidr::v4([10, 0, 0, 0], 8), "private (RFC 1918)"),
    (
        Cidr::v4([100, 64, 0, 0], 10),
        "carrier-grade NAT (RFC 6598)",
    ),
    (Cidr::v4([127, 0, 0, 0], 8), "loopback"),
    (
        Cidr::v4([169, 254, 0, 0], 16),
        "link-local (includes cloud metadata 169.254.169.254)",
    ),
    (Cidr::v4([172, 16, 0, 0], 12), "private (RFC 1918)"),
    (Cidr::v4([192, 0, 0, 0], 24), "IETF protocol assignments"),
    (Cidr::v4([192, 0, 2, 0], 24), "documentation (TEST-NET-1)"),
    (Cidr::v4([192, 88, 99, 0], 24), "6to4 relay anycast"),
    (Cidr::v4([192, 168, 0, 0], 16), "private (RFC 1918)"),
    (Cidr::v4([198, 18, 0, 0], 15), "benchmarking (RFC 2544)"),
    (
        Cidr::v4([198, 51, 100, 0], 24),
        "documentation (TEST-NET-2)",
    ),
    (Cidr::v4([203, 0, 113, 0], 24), "documentation (TEST-NET-3)"),
    (Cidr::v4([224, 0, 0, 0], 4), "multicast"),
    (Cidr::v4([240, 0, 0, 0], 4), "reserved / broadcast"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (deprecated)",
    ),
    (
        Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64",
    ),
    (Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (
        Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation",
    ),
    (Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), "6to4"),
    (Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique-local"),
    (Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated)",
    ),
    (Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

const NAT64: Cidr = Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

/// Which addresses deliveries may connect to: everything public, plus the `allow` list.
///
/// Config shape: `{ allow = ["127.0.0.0/8"] }`. An allowed network wins over a denied one,
/// so `allow = ["127.0.0.0/8"]` opens loopback for tests and local development only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsrfPolicy {
    /// Networks allowed even though they are in a denied range.
    #[serde(default)]
    pub allow: Vec<Cidr>,
}

impl SsrfPolicy {
    /// The default policy with `allow` added.
    pub fn allowing(allow: impl IntoIterator<Item = Cidr>) -> Self {
        Self {
            allow: allow.into_iter().collect(),
        }
    }

    /// `Ok` when a delivery may connect to `ip`, else the reason it may not.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = embedded_v4(ip).map_or(ip, IpAddr::V4);
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match DENIED.iter().find(|(c, _)| c.contains(ip)) {
            Some((_, why)) => Err(why),
            None => Ok(()),
        }
    }
}

/// The IPv4 address carried by an IPv4-mapped or NAT64 IPv6 address.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if NAT64.contains(ip) {
        // The low 32 bits are the address; truncation is the point.
        return Some(Ipv4Addr::from_bits(v6.to_bits() as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_denied() {
        let p = SsrfPolicy::default();
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.7",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(p.check(ip(a)).is_err(), "{a} must be denied");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let p = SsrfPolicy::default();
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(p.check(ip(a)), Ok(()), "{a} must pass");
        }
    }

    #[test]
    fn allow_list_opens_a_range_and_covers_mapped_forms() {
        let p = SsrfPolicy::allowing(["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(p.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(p.check(ip("::ffff:127.0.0.2")), Ok(()));
        assert!(p.check(ip("::1")).is_err());
        assert!(p.check(ip("169.254.169.254")).is_err());
        let reason = SsrfPolicy::default()
            .check(ip("169.254.169.254"))
            .unwrap_err();
        assert!(reason.contains("metadata"));
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("9.9.9.9")));
        assert!(!"0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("::1")));
        assert!("::/0".parse::<Cidr>().unwrap().contains(ip("::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "x/8",
            "1.2.3.4/+8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let p: SsrfPolicy = serde_json::from_str(r#"{"allow":["127.0.0.0/8","::1"]}"#).unwrap();
        assert_eq!(p.allow.len(), 2);
        assert!(serde_json::from_str::<SsrfPolicy>(r#"{"allow":["nope"]}"#).is_err());
        assert!(serde_json::from_str::<SsrfPolicy>(r#"{"deny":[]}"#).is_err());
    }
}
