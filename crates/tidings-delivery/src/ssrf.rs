//! The SSRF policy for Request URLs, checked on the resolved address at connect time:
//! private, loopback, link-local (cloud metadata), shared, multicast and unspecified
//! addresses are refused unless the operator allows private targets (`--dev` does).
//!
//! Hostnames go through [`GuardedResolver`], which reqwest calls for every new connection,
//! so a name that resolves to a private address is refused even if it changed since the
//! URL was saved. IP-literal hosts never reach a resolver; [`check_url`] covers them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused, or `None` if it may be a target.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_unspecified() || v4.is_broadcast() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("shared address space")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refusal(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if (seg[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// Checks a URL whose host is an IP literal (names are checked when resolved).
pub fn check_url(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    match refusal(ip) {
        Some(why) => Err(format!("refused by the SSRF policy: {ip} is {why}")),
        None => Ok(()),
    }
}

/// A DNS resolver that drops refused addresses (and fails when none is left).
#[derive(Clone)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs
                .into_iter()
                .partition(|a| allow || refusal(a.ip()).is_none());
            if ok.is_empty() {
                let why = refused
                    .first()
                    .map(|a| {
                        format!(
                            "{host} resolves to {} which is {}",
                            a.ip(),
                            refusal(a.ip()).unwrap_or("refused")
                        )
                    })
                    .unwrap_or_else(|| format!("{host} has no address"));
                let err: Box<dyn std::error::Error + Send + Sync> =
                    format!("refused by the SSRF policy: {why}").into();
                return Err(err);
            }
            let iter: Addrs = Box::new(ok.into_iter());
            Ok(iter)
        })
    }
}

pub fn resolver(allow_private: bool) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { allow_private })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(refusal(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(refusal(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }

    #[test]
    fn ip_literal_urls_are_checked_unless_private_targets_are_allowed() {
        let u = url::Url::parse("http://127.0.0.1:3100/slack/events").unwrap();
        assert!(check_url(&u, false).is_err());
        assert!(check_url(&u, true).is_ok());
        let named = url::Url::parse("https://example.com/x").unwrap();
        assert!(
            check_url(&named, false).is_ok(),
            "names are checked at resolution"
        );
    }
}
