//! The SSRF policy for Request URLs, checked on the resolved address at connect time.
//!
//! The table below is the IANA IPv4 and IPv6 Special-Purpose Address Registries: every
//! block that is not globally reachable, plus documentation, benchmarking, multicast,
//! reserved and broadcast space. IPv6 forms that carry an IPv4 address (mapped, compatible,
//! NAT64 `64:ff9b::/96`, 6to4, Teredo's obfuscated client) are decoded and the IPv4
//! address is checked against the IPv4 table, so `::127.0.0.1` or `2002:a9fe:a9fe::` do
//! not slip past. Two blocks that hold "globally reachable" anycast service addresses
//! (`192.0.0.0/24`, the rest of `2001::/23`) are refused whole: those anycast addresses
//! are answered by nearby infrastructure (PCP, TURN, DNS-SD on the local router), and no
//! Request URL lives there.
//!
//! What the operator may open ([`TargetPolicy`]): `allow_loopback_targets` lets loopback
//! through (127.0.0.0/8, `::1`, and IPv4-mapped loopback, which is the same socket);
//! `allow_private_targets` turns the policy off (every special-purpose block, loopback
//! included, as before the loopback key existed). `--dev` turns on loopback only.
//!
//! Hostnames go through [`GuardedResolver`], which the HTTP client calls for every new connection,
//! so a name that resolves to a refused address is refused even if it changed since the
//! URL was saved. IP-literal hosts never reach a resolver; [`check_url`] covers them.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::{Ipv4Net, Ipv6Net};

/// What the operator allows besides globally reachable addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Loopback (127.0.0.0/8, `::1`, `::ffff:127.0.0.0/104`): `--dev`'s setting.
    pub allow_loopback: bool,
    /// Every special-purpose address (the policy is off).
    pub allow_private: bool,
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The registry block, e.g. "private-use (10.0.0.0/8)".
    pub block: &'static str,
    /// The IPv4 address an IPv6 address carried, when that is what was refused.
    pub embedded: Option<(&'static str, Ipv4Addr)>,
    /// Loopback itself (allowed by `allow_loopback_targets`).
    pub loopback: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.embedded {
            Some((form, v4)) => write!(f, "{form} of {v4}, which is {}", self.block),
            None => f.write_str(self.block),
        }
    }
}

impl TargetPolicy {
    /// Whether this policy lets a refused address through.
    pub fn permits(self, r: &Refusal) -> bool {
        self.allow_private || (self.allow_loopback && r.loopback)
    }

    /// `Err` with the reason when `ip` may not be a target under this policy.
    pub fn check(self, ip: IpAddr) -> Result<(), Refusal> {
        match refusal(ip) {
            Some(r) if !self.permits(&r) => Err(r),
            _ => Ok(()),
        }
    }
}

/// How an IPv4 block is treated.
#[derive(Clone, Copy)]
enum V4 {
    Loopback,
    Refuse,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

/// The IPv4 special-purpose blocks (IANA registry, RFC 6890 and updates), plus multicast.
/// A block not listed here is globally reachable (AS112 `192.31.196.0/24`,
/// `192.175.48.0/24`; AMT `192.52.193.0/24`).
const V4_TABLE: &[(Ipv4Net, &str, V4)] = &[
    (
        v4(0, 0, 0, 0, 8),
        "\"this network\" (0.0.0.0/8)",
        V4::Refuse,
    ),
    (v4(10, 0, 0, 0, 8), "private-use (10.0.0.0/8)", V4::Refuse),
    (
        v4(100, 64, 0, 0, 10),
        "shared address space (100.64.0.0/10)",
        V4::Refuse,
    ),
    (v4(127, 0, 0, 0, 8), "loopback (127.0.0.0/8)", V4::Loopback),
    (
        v4(169, 254, 0, 0, 16),
        "link-local, cloud metadata (169.254.0.0/16)",
        V4::Refuse,
    ),
    (
        v4(172, 16, 0, 0, 12),
        "private-use (172.16.0.0/12)",
        V4::Refuse,
    ),
    (
        v4(192, 0, 0, 0, 24),
        "IETF protocol assignments (192.0.0.0/24)",
        V4::Refuse,
    ),
    (
        v4(192, 0, 2, 0, 24),
        "documentation, TEST-NET-1 (192.0.2.0/24)",
        V4::Refuse,
    ),
    (
        v4(192, 88, 99, 0, 24),
        "deprecated 6to4 relay anycast (192.88.99.0/24)",
        V4::Refuse,
    ),
    (
        v4(192, 168, 0, 0, 16),
        "private-use (192.168.0.0/16)",
        V4::Refuse,
    ),
    (
        v4(198, 18, 0, 0, 15),
        "benchmarking (198.18.0.0/15)",
        V4::Refuse,
    ),
    (
        v4(198, 51, 100, 0, 24),
        "documentation, TEST-NET-2 (198.51.100.0/24)",
        V4::Refuse,
    ),
    (
        v4(203, 0, 113, 0, 24),
        "documentation, TEST-NET-3 (203.0.113.0/24)",
        V4::Refuse,
    ),
    (v4(224, 0, 0, 0, 4), "multicast (224.0.0.0/4)", V4::Refuse),
    (
        v4(255, 255, 255, 255, 32),
        "limited broadcast (255.255.255.255/32)",
        V4::Refuse,
    ),
    (v4(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)", V4::Refuse),
];

/// How an IPv6 block is treated.
#[derive(Clone, Copy)]
enum V6 {
    Loopback,
    Refuse,
    /// Carries an IPv4 address; decode it and check that.
    Embeds(Embedding),
}

#[derive(Clone, Copy)]
enum Embedding {
    /// `::ffff:a.b.c.d`: the same socket as the IPv4 address, loopback included.
    Mapped,
    /// `::a.b.c.d` (deprecated IPv4-compatible).
    Compatible,
    /// `64:ff9b::a.b.c.d`: the well-known NAT64 prefix, last 32 bits.
    Nat64,
    /// `2002:AABB:CCDD::/48`: 6to4, bits 16..48.
    SixToFour,
    /// `2001:0:SSSS:SSSS:flags:port:CCCC:CCCC`: Teredo, server in bits 32..64 and the
    /// client's address inverted in the last 32 bits; both are checked.
    Teredo,
}

const fn v6(segments: [u16; 8], len: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// The IPv6 special-purpose blocks (IANA registry), most specific first, ending with
/// everything outside the global unicast space `2000::/3` (reserved by the IETF).
const V6_TABLE: &[(Ipv6Net, &str, V6)] = &[
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        "unspecified (::/128)",
        V6::Refuse,
    ),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        "loopback (::1/128)",
        V6::Loopback,
    ),
    (
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        "IPv4-mapped (::ffff:0:0/96)",
        V6::Embeds(Embedding::Mapped),
    ),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (::/96)",
        V6::Embeds(Embedding::Compatible),
    ),
    (
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
        "NAT64 (64:ff9b::/96)",
        V6::Embeds(Embedding::Nat64),
    ),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local-use NAT64 (64:ff9b:1::/48)",
        V6::Refuse,
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (100::/64)",
        V6::Refuse,
    ),
    (
        v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64),
        "dummy prefix (100:0:0:1::/64)",
        V6::Refuse,
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        "Teredo (2001::/32)",
        V6::Embeds(Embedding::Teredo),
    ),
    (
        v6([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48),
        "benchmarking (2001:2::/48)",
        V6::Refuse,
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments (2001::/23)",
        V6::Refuse,
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation (2001:db8::/32)",
        V6::Refuse,
    ),
    (
        v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        "6to4 (2002::/16)",
        V6::Embeds(Embedding::SixToFour),
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "documentation (3fff::/20)",
        V6::Refuse,
    ),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        "segment routing SIDs (5f00::/16)",
        V6::Refuse,
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (fc00::/7)",
        V6::Refuse,
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local (fe80::/10)",
        V6::Refuse,
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "deprecated site-local (fec0::/10)",
        V6::Refuse,
    ),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast (ff00::/8)",
        V6::Refuse,
    ),
];

/// Everything else outside this is reserved by the IETF (not yet allocated).
const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// Why `ip` is refused, or `None` if it is globally reachable.
pub fn refusal(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => refusal_v6(v6),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<Refusal> {
    V4_TABLE
        .iter()
        .find(|(net, _, _)| net.contains(&ip))
        .map(|(_, block, kind)| Refusal {
            block,
            embedded: None,
            loopback: matches!(kind, V4::Loopback),
        })
}

fn refusal_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let Some((_, block, kind)) = V6_TABLE.iter().find(|(net, _, _)| net.contains(&ip)) else {
        return (!GLOBAL_UNICAST.contains(&ip)).then_some(Refusal {
            block: "reserved by the IETF (outside 2000::/3)",
            embedded: None,
            loopback: false,
        });
    };
    let embedding = match kind {
        V6::Loopback | V6::Refuse => {
            return Some(Refusal {
                block,
                embedded: None,
                loopback: matches!(kind, V6::Loopback),
            })
        }
        V6::Embeds(e) => *e,
    };
    let bits = ip.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    let carried: &[Ipv4Addr] = match embedding {
        Embedding::Mapped | Embedding::Compatible | Embedding::Nat64 => &[low32],
        Embedding::SixToFour => &[Ipv4Addr::from_bits((bits >> 80) as u32)],
        Embedding::Teredo => &[
            Ipv4Addr::from_bits(!(bits as u32)),
            Ipv4Addr::from_bits((bits >> 64) as u32),
        ],
    };
    carried.iter().find_map(|&v4| {
        refusal_v4(v4).map(|r| Refusal {
            block: r.block,
            embedded: Some((block, v4)),
            // A mapped address is the IPv4 socket itself; the others route elsewhere.
            loopback: r.loopback && matches!(embedding, Embedding::Mapped),
        })
    })
}

/// Checks a URL whose host is an IP literal (names are checked when resolved).
pub fn check_url(url: &url::Url, policy: TargetPolicy) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    policy
        .check(ip)
        .map_err(|r| format!("refused by the SSRF policy: {ip} is {r}"))
}

/// A DNS resolver that drops refused addresses (and fails when none is left).
#[derive(Clone, Copy)]
pub struct GuardedResolver {
    pub policy: TargetPolicy,
}

/// Why a name was not resolved to any address the policy allows.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

impl GuardedResolver {
    /// The addresses `host` resolves to that the policy allows (port 0: the connector
    /// sets the URL's).
    pub async fn resolve(self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let mut ok = Vec::with_capacity(addrs.len());
        let mut first_refused = None;
        for a in addrs {
            match self.policy.check(a.ip()) {
                Ok(()) => ok.push(a),
                Err(r) => {
                    first_refused.get_or_insert((a.ip(), r));
                }
            }
        }
        if ok.is_empty() {
            let why = match first_refused {
                Some((ip, r)) => format!("{host} resolves to {ip} which is {r}"),
                None => format!("{host} has no address"),
            };
            return Err(format!("refused by the SSRF policy: {why}").into());
        }
        Ok(ok)
    }
}

/// The resolver as hyper's connector calls it.
impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = *self;
        Box::pin(async move { this.resolve(name.as_str()).await.map(Vec::into_iter) })
    }
}

pub fn resolver(policy: TargetPolicy) -> GuardedResolver {
    GuardedResolver { policy }
}

#[cfg(test)]
mod tests;
