//! Where deliveries may go: no SSRF into the operator's network.
//!
//! A URL is checked when an endpoint is saved and again before every attempt: its host is
//! resolved and **every** address must be public: loopback, private (RFC 1918), link-local
//! (cloud metadata services live there), unspecified, CGNAT (100.64/10), multicast,
//! reserved and documentation ranges, IPv6 unique-local, site-local and link-local, and
//! IPv4 addresses embedded in IPv6 (v4-mapped, v4-compatible, NAT64) judged as the IPv4
//! address they carry, are refused. The request then goes to an address that was checked
//! (the client's resolver is overridden with it), so a DNS answer that changes between the
//! check and the connection (DNS rebinding) cannot redirect it. Redirects are not followed.
//! `IMIX_ALLOW_PRIVATE_WEBHOOK_TARGETS=true` lifts the address check (tests, or an operator
//! who means to deliver inside their network).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a target was refused; the message names no internal detail beyond the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not an absolute `http` or `https` URL with a host (or it carries credentials).
    #[error("{0}")]
    BadUrl(String),
    /// The host did not resolve.
    #[error("the host `{0}` cannot be resolved")]
    Unresolvable(String),
    /// The host resolves to an address that is not public.
    #[error("the host resolves to {0}, which is not a public address")]
    Private(IpAddr),
}

/// A URL whose host resolved to checked addresses.
#[derive(Debug, Clone)]
pub struct CheckedTarget {
    /// The URL.
    pub url: url::Url,
    /// Its host, as the request names it.
    pub host: String,
    /// The addresses it resolved to, all allowed.
    pub addrs: Vec<SocketAddr>,
}

/// Whether an address is one deliveries must not reach.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let seg = ip.segments();
    // v4-compatible (::a.b.c.d, deprecated), SIIT v4-translated (::ffff:0:a.b.c.d) and
    // NAT64 (64:ff9b::/96): the IPv4 inside decides.
    if seg[..6] == [0, 0, 0, 0, 0, 0]
        || seg[..6] == [0, 0, 0, 0, 0xffff, 0]
        || seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        let v4 = Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        );
        return ip.is_unspecified() || ip.is_loopback() || forbidden_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (seg[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (seg[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        // Tunnels and translators that carry an IPv4 address a relay or gateway may forward
        // to: 6to4 (2002::/16), Teredo (2001::/32), local-use NAT64 (64:ff9b:1::/48). No
        // public webhook receiver needs them, so they are refused whole (a probe reached
        // 127.0.0.1 and 169.254.169.254 through them).
        || seg[0] == 0x2002
        || (seg[0] == 0x2001 && seg[1] == 0)
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
        || (seg[0] == 0x100 && seg[1..4] == [0, 0, 0]) // discard-only 100::/64
}

/// Parses `raw` as a delivery URL: absolute, `http` or `https`, with a host, without
/// credentials or a fragment.
pub fn parse_url(raw: &str) -> Result<url::Url, TargetError> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| TargetError::BadUrl(format!("is not an absolute URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::BadUrl("must be an http or https URL".into()));
    }
    if url.host().is_none() {
        return Err(TargetError::BadUrl("must name a host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::BadUrl(
            "must not carry a user name or password".into(),
        ));
    }
    if url.fragment().is_some() {
        return Err(TargetError::BadUrl("must not carry a fragment".into()));
    }
    Ok(url)
}

/// Resolves `url`'s host and checks every address (unless `allow_private`).
pub async fn check(url: &url::Url, allow_private: bool) -> Result<CheckedTarget, TargetError> {
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(TargetError::BadUrl("must name a host".into())),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        _ => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| TargetError::Unresolvable(host.clone()))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable(host));
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
            return Err(TargetError::Private(bad.ip()));
        }
    }
    Ok(CheckedTarget {
        url: url.clone(),
        host,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_forbidden_and_public_ones_allowed() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b:1::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "100::1",
        ] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_what_they_resolve_to() {
        for bad in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let url = parse_url(bad).unwrap();
            assert!(
                matches!(check(&url, false).await, Err(TargetError::Private(_))),
                "{bad}"
            );
            assert!(check(&url, true).await.is_ok(), "{bad} when allowed");
        }
        for refused in ["ftp://example.com/", "/relative", "http://u:p@example.com/"] {
            assert!(parse_url(refused).is_err(), "{refused}");
        }
    }
}
