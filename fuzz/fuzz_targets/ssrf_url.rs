//! Request URLs an operator gives an app, and the addresses they resolve to: the admin
//! API's check, then the SSRF policy on the URL and on the address in every policy.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use tidings_delivery::ssrf::{self, TargetPolicy};

fn policies() -> [TargetPolicy; 4] {
    [(false, false), (true, false), (false, true), (true, true)].map(
        |(allow_loopback, allow_private)| TargetPolicy {
            allow_loopback,
            allow_private,
        },
    )
}

fn check_ip(ip: IpAddr) {
    let refusal = ssrf::refusal(ip);
    let strict = policies()[0];
    assert_eq!(strict.check(ip).is_err(), refusal.is_some());
    for p in policies() {
        let _ = p.check(ip);
    }
    if ip.is_loopback() || ip.is_unspecified() {
        assert!(refusal.is_some(), "{ip} passes the strict policy");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = <[u8; 16]>::try_from(data) {
        check_ip(IpAddr::V6(Ipv6Addr::from(b)));
    }
    if let Ok(b) = <[u8; 4]>::try_from(data) {
        check_ip(IpAddr::V4(Ipv4Addr::from(b)));
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tidings_server::admin::validate::request_url(s);
    if let Ok(ip) = s.parse::<IpAddr>() {
        check_ip(ip);
    }
    if let Ok(u) = url::Url::parse(s) {
        for p in policies() {
            let _ = ssrf::check_url(&u, p);
        }
    }
});
