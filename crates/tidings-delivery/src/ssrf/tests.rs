//! Tests of the SSRF table: every block named, embedded IPv4 decoded, the policies.

use super::*;

const STRICT: TargetPolicy = TargetPolicy {
    allow_loopback: false,
    allow_private: false,
};
const DEV: TargetPolicy = TargetPolicy {
    allow_loopback: true,
    allow_private: false,
};
const OPEN: TargetPolicy = TargetPolicy {
    allow_loopback: false,
    allow_private: true,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// (address, the block it must be refused as) — every block of the table, at its
/// first and last address where that matters.
const REFUSED: &[(&str, &str)] = &[
    ("0.0.0.0", "0.0.0.0/8"),
    ("0.255.255.255", "0.0.0.0/8"),
    ("10.1.2.3", "10.0.0.0/8"),
    ("100.64.0.1", "100.64.0.0/10"),
    ("100.127.255.254", "100.64.0.0/10"),
    ("127.0.0.1", "127.0.0.0/8"),
    ("127.255.255.254", "127.0.0.0/8"),
    ("169.254.169.254", "169.254.0.0/16"),
    ("172.16.0.1", "172.16.0.0/12"),
    ("172.31.255.255", "172.16.0.0/12"),
    ("192.0.0.1", "192.0.0.0/24"),
    ("192.0.0.170", "192.0.0.0/24"),
    ("192.0.2.1", "192.0.2.0/24"),
    ("192.88.99.1", "192.88.99.0/24"),
    ("192.168.1.1", "192.168.0.0/16"),
    ("198.18.0.1", "198.18.0.0/15"),
    ("198.19.255.255", "198.18.0.0/15"),
    ("198.51.100.7", "198.51.100.0/24"),
    ("203.0.113.9", "203.0.113.0/24"),
    ("224.0.0.1", "224.0.0.0/4"),
    ("239.255.255.255", "224.0.0.0/4"),
    ("240.0.0.1", "240.0.0.0/4"),
    ("255.255.255.254", "240.0.0.0/4"),
    ("255.255.255.255", "255.255.255.255/32"),
    ("::", "::/128"),
    ("::1", "::1/128"),
    ("64:ff9b:1::a00:1", "64:ff9b:1::/48"),
    ("100::1", "100::/64"),
    ("100:0:0:1::1", "100:0:0:1::/64"),
    ("2001:1::1", "2001::/23"),
    ("2001:2::1", "2001:2::/48"),
    ("2001:10::1", "2001::/23"),
    ("2001:1ff::1", "2001::/23"),
    ("2001:db8::1", "2001:db8::/32"),
    ("3fff::1", "3fff::/20"),
    ("5f00::1", "5f00::/16"),
    ("fc00::1", "fc00::/7"),
    ("fd12:3456::1", "fc00::/7"),
    ("fe80::1", "fe80::/10"),
    ("fec0::1", "fec0::/10"),
    ("ff02::1", "ff00::/8"),
    ("4000::1", "outside 2000::/3"),
    ("1::1", "outside 2000::/3"),
    ("::1:0:0:0", "outside 2000::/3"),
];

#[test]
fn every_special_purpose_block_is_refused_and_named() {
    for (addr, block) in REFUSED {
        let r = refusal(ip(addr)).unwrap_or_else(|| panic!("{addr} must be refused"));
        assert!(
            r.block.contains(block),
            "{addr}: {} is not {block}",
            r.block
        );
        assert_eq!(r.embedded, None, "{addr}");
    }
}

/// IPv6 forms carrying a refused IPv4 address, with the form and the address.
const EMBEDDED: &[(&str, &str, &str)] = &[
    ("::ffff:127.0.0.1", "IPv4-mapped", "127.0.0.1"),
    ("::ffff:169.254.169.254", "IPv4-mapped", "169.254.169.254"),
    ("::127.0.0.1", "IPv4-compatible", "127.0.0.1"),
    ("::10.0.0.1", "IPv4-compatible", "10.0.0.1"),
    ("::0.0.0.2", "IPv4-compatible", "0.0.0.2"),
    ("64:ff9b::127.0.0.1", "NAT64", "127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64", "169.254.169.254"),
    ("2002:7f00:1::", "6to4", "127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4", "169.254.169.254"),
    ("2002:c0a8:101:1::1", "6to4", "192.168.1.1"),
    // Teredo: server 65.54.227.120, client 127.0.0.1 stored inverted (80ff:fffe).
    (
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "Teredo",
        "127.0.0.1",
    ),
    // Client 10.0.0.1 inverted is f5ff:fffe.
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo", "10.0.0.1"),
    // A private Teredo server (10.0.0.1) with a public client (8.8.8.8 → f7f7:f7f7).
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "Teredo", "10.0.0.1"),
];

#[test]
fn ipv6_forms_carrying_a_refused_ipv4_address_are_decoded_and_refused() {
    for (addr, form, v4) in EMBEDDED {
        let r = refusal(ip(addr)).unwrap_or_else(|| panic!("{addr} must be refused"));
        let (got_form, got_v4) = r.embedded.unwrap_or_else(|| panic!("{addr}: {r}"));
        assert!(got_form.contains(form), "{addr}: {got_form}");
        assert_eq!(got_v4.to_string(), *v4, "{addr}");
        assert!(r.to_string().contains(v4), "{r}");
    }
}

#[test]
fn global_addresses_and_their_embeddings_pass() {
    for addr in [
        "8.8.8.8",
        "93.184.216.34",
        "1.1.1.1",
        "100.63.255.255",
        "100.128.0.0",
        "172.32.0.1",
        "192.31.196.1",
        "198.17.255.255",
        "198.20.0.1",
        "223.255.255.255",
        "2606:2800:220:1::1",
        "2a00:1450:4001::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
    ] {
        assert_eq!(refusal(ip(addr)), None, "{addr}");
    }
}

#[test]
fn loopback_alone_opens_loopback_and_its_mapped_form_only() {
    for addr in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        assert!(STRICT.check(ip(addr)).is_err(), "{addr}");
        assert!(DEV.check(ip(addr)).is_ok(), "{addr}");
    }
    for addr in [
        "0.0.0.0",
        "10.0.0.1",
        "169.254.169.254",
        "192.168.1.1",
        "100.64.0.1",
        "fd00::1",
        "fe80::1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "::ffff:10.0.0.1",
    ] {
        assert!(DEV.check(ip(addr)).is_err(), "{addr} is not loopback");
        assert!(OPEN.check(ip(addr)).is_ok(), "{addr}");
    }
    assert!(
        OPEN.check(ip("127.0.0.1")).is_ok(),
        "private implies loopback"
    );
}

#[test]
fn ip_literal_urls_are_checked_against_the_policy() {
    let u = url::Url::parse("http://127.0.0.1:3100/slack/events").unwrap();
    assert!(check_url(&u, STRICT).is_err());
    assert!(check_url(&u, DEV).is_ok());
    assert!(check_url(&u, OPEN).is_ok());
    let private = url::Url::parse("http://10.0.0.1/x").unwrap();
    assert!(check_url(&private, DEV).is_err());
    let mapped = url::Url::parse("http://[::ffff:a9fe:a9fe]/latest/meta-data").unwrap();
    let e = check_url(&mapped, DEV).unwrap_err();
    assert!(e.contains("169.254.169.254") && e.contains("SSRF"), "{e}");
    let named = url::Url::parse("https://example.com/x").unwrap();
    assert!(
        check_url(&named, STRICT).is_ok(),
        "names are checked at resolution"
    );
}

#[tokio::test]
async fn names_resolving_to_loopback_follow_the_policy() {
    let strict = resolver(STRICT).resolve("localhost").await;
    let err = strict.expect_err("localhost is refused").to_string();
    assert!(err.contains("SSRF") && err.contains("loopback"), "{err}");
    let dev = resolver(DEV)
        .resolve("localhost")
        .await
        .expect("dev allows it");
    assert!(dev.into_iter().all(|a| a.ip().is_loopback()));
}
