//! Which SMTP hosts a tenant may make the server connect to.
//!
//! Tenant administrators choose their SMTP host, so without a check they could make the
//! server open connections inside its own network (`127.0.0.1:<port>`, a cloud metadata
//! address such as `169.254.169.254`) and read from the test email's error which ports
//! answer. Tenant-level hosts must therefore resolve to public addresses only — checked when
//! the settings are saved and again right before each connection (DNS can change), and the
//! connection then goes to the address that was checked. The operator may lift this with
//! `IMIX_ALLOW_PRIVATE_SMTP_HOSTS=true` (a relay on the private network); platform-level
//! settings are the operator's own and may always use private addresses.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use crate::MailError;

/// How long a host name may take to resolve before the check gives up.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `ip` is an address on the public internet: not loopback, private (RFC 1918,
/// unique local), link-local, shared (carrier-grade NAT), unspecified, broadcast,
/// multicast, documentation or benchmarking space; IPv4 inside IPv6 (mapped, translated,
/// 6to4) is judged as that IPv4 address, and Teredo tunnels are refused outright.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped().or_else(|| embedded_v4(v6)) {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

/// The IPv4 address an IPv6 address carries to reach it: IPv4-translated
/// (`::ffff:0:a.b.c.d`, RFC 2765) or 6to4 (`2002:aabb:ccdd::/48`, RFC 3056).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0xffff, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64, may reach IPv4 inside
        || (first == 0x2001 && ip.segments()[1] == 0) // Teredo tunnel, 2001::/32
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// The refusal every check gives: the same words whatever the address or port, so it
/// reveals nothing about the network behind the server.
pub fn refused() -> MailError {
    MailError::HostNotAllowed
}

/// Resolves `host` and checks every address it resolves to; answers the first one to
/// connect to. An IP literal is checked as is.
///
/// Errors: [`MailError::HostNotAllowed`] when any address is not public,
/// [`MailError::Connection`] when the name does not resolve (in time).
pub async fn resolve_public(host: &str, port: u16) -> Result<IpAddr, MailError> {
    let addresses = resolve(host, port).await?;
    if addresses.iter().any(|ip| !is_public(*ip)) {
        return Err(refused());
    }
    addresses
        .first()
        .copied()
        .ok_or_else(|| MailError::connection(format!("{host} does not resolve to any address")))
}

/// Every address `host` resolves to (an IP literal resolves to itself).
pub async fn resolve(host: &str, port: u16) -> Result<Vec<IpAddr>, MailError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Err(elapsed) => Err(MailError::connection(format!(
            "{host} did not resolve within {} seconds",
            RESOLVE_TIMEOUT.as_secs()
        ))
        .caused_by(elapsed)),
        Ok(Err(e)) => {
            Err(MailError::connection(format!("cannot resolve {host}: {e}")).caused_by(e))
        }
        Ok(Ok(found)) => Ok(found.map(|a| a.ip()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:10.0.0.1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            let ip: IpAddr = private.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_public(ip), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(is_public(ip), "{public}");
        }
    }

    #[tokio::test]
    async fn localhost_is_refused_and_a_public_literal_is_pinned() {
        assert!(matches!(
            resolve_public("localhost", 25).await,
            Err(MailError::HostNotAllowed)
        ));
        assert!(matches!(
            resolve_public("127.0.0.1", 25).await,
            Err(MailError::HostNotAllowed)
        ));
        assert!(matches!(
            resolve_public("8.8.8.8", 25).await,
            Ok(ip) if ip == IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8))
        ));
    }
}
