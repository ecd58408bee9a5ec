//! A cap on sign-in attempts per client address, before any password is checked.
//!
//! The per-account throttle (`imix_tenancy::throttle`) stops guessing one account's password;
//! it does not stop one address from trying a few passwords on each of thousands of
//! accounts, nor from making the server hash passwords (argon2id, deliberately slow) as fast
//! as it can send requests. This cap does: every attempt from an address, good or bad,
//! takes a token of that address's bucket (`SIGN_IN_ATTEMPTS_PER_MINUTE`, also the burst).
//!
//! Addresses are kept in memory only, per replica, and forgotten once their bucket is full
//! again: nothing of it is stored. IPv6 clients are counted per /64, the block one customer
//! line usually gets, so hopping between its addresses does not multiply the allowance.
//!
//! A refusal is audited (`auth.sign_in_address_throttled`, by the caller), but only the first
//! of an address in each [`AUDIT_WINDOW`]: a flood of refused attempts must not become a
//! flood of audit entries (a store write each).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};

/// Addresses remembered before the ones whose bucket refilled are dropped.
const FORGET_ABOVE: usize = 10_000;

/// How long after an audited refusal further refusals of the same address are not audited.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(60);

/// A refused attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Whole seconds to wait (at least 1).
    pub retry_after_secs: u64,
    /// The address as counted (an IPv6 client's /64 as `…::/64`) when this refusal is to be
    /// audited: the first of its address in the [`AUDIT_WINDOW`]. `None`: it is not.
    pub audit: Option<String>,
}

/// Sign-in attempts per address: a keyed token bucket (`governor`).
#[derive(Debug)]
pub struct SignInFlood {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    per_minute: NonZeroU32,
    /// When each address's last audited refusal was.
    audited: Mutex<HashMap<IpAddr, Instant>>,
}

impl SignInFlood {
    /// At most `per_minute` attempts a minute per address, all of them at once if need be.
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_minute,
            audited: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `addr`: refused when its allowance is spent. An unknown
    /// address (a Unix socket, a test client) is not limited here.
    pub fn check(&self, addr: Option<IpAddr>) -> Result<(), Refused> {
        let Some(addr) = addr else {
            return Ok(());
        };
        if self.limiter.len() > FORGET_ABOVE {
            self.limiter.retain_recent();
        }
        let block = block_of(addr);
        match self.limiter.check_key(&block) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(Refused {
                    // Whole seconds, rounded up, and never 0: a client told "retry in 0 s"
                    // would retry at once.
                    retry_after_secs: wait.as_secs() + 1,
                    audit: self
                        .first_in_window(block, Instant::now())
                        .then(|| shown(block)),
                })
            }
        }
    }

    /// Whether a refusal of `block` at `now` is its first in the [`AUDIT_WINDOW`] (and
    /// notes it). Bounded: past [`FORGET_ABOVE`] addresses the expired ones are dropped, and
    /// if that is not enough (a flood from that many addresses within one window) further
    /// addresses are not audited rather than remembered without limit.
    fn first_in_window(&self, block: IpAddr, now: Instant) -> bool {
        // A poisoned lock only means another thread panicked mid-insert: the map is usable.
        let mut audited = self
            .audited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(last) = audited.get(&block) {
            if now.saturating_duration_since(*last) < AUDIT_WINDOW {
                return false;
            }
        } else if audited.len() >= FORGET_ABOVE {
            audited.retain(|_, last| now.saturating_duration_since(*last) < AUDIT_WINDOW);
            if audited.len() >= FORGET_ABOVE {
                return false;
            }
        }
        audited.insert(block, now);
        true
    }

    /// The configured attempts per minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute.get()
    }
}

/// The key an address is counted under: itself for IPv4, its /64 for IPv6 (an IPv4
/// address mapped into IPv6 counts as the IPv4 one).
fn block_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How a counted address is shown in the audit log: an IPv6 client's block as `…::/64`.
fn shown(block: IpAddr) -> String {
    match block {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flood(per_minute: u32) -> SignInFlood {
        SignInFlood::new(NonZeroU32::new(per_minute).unwrap())
    }

    #[test]
    fn an_address_gets_its_allowance_then_waits() {
        let f = flood(3);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(f.check(Some(a)), Ok(()));
        }
        let wait = f.check(Some(a)).unwrap_err().retry_after_secs;
        assert!((1..=21).contains(&wait), "{wait}");
        // Another address is not affected; an unknown one is not limited.
        assert_eq!(f.check(Some("203.0.113.8".parse().unwrap())), Ok(()));
        for _ in 0..10 {
            assert_eq!(f.check(None), Ok(()));
        }
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_an_allowance() {
        let f = flood(2);
        assert_eq!(f.check(Some("2001:db8:1:2::1".parse().unwrap())), Ok(()));
        assert_eq!(f.check(Some("2001:db8:1:2::ffff".parse().unwrap())), Ok(()));
        assert!(f
            .check(Some("2001:db8:1:2:abcd::9".parse().unwrap()))
            .is_err());
        assert_eq!(f.check(Some("2001:db8:1:3::1".parse().unwrap())), Ok(()));
        // Mapped IPv4 is the IPv4 address.
        let f = flood(1);
        assert_eq!(f.check(Some("198.51.100.1".parse().unwrap())), Ok(()));
        assert!(f
            .check(Some("::ffff:198.51.100.1".parse().unwrap()))
            .is_err());
    }

    #[test]
    fn a_refusal_is_audited_once_per_address_and_window() {
        let f = flood(1);
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(f.check(Some(a)), Ok(()));
        // The first refusal is to be audited, naming the address; the next ones are not.
        assert_eq!(
            f.check(Some(a)).unwrap_err().audit.as_deref(),
            Some("203.0.113.9")
        );
        for _ in 0..20 {
            assert_eq!(f.check(Some(a)).unwrap_err().audit, None);
        }
        // Another address has its own window; an IPv6 client is shown as its /64.
        let v6: IpAddr = "2001:db8:1:2::7".parse().unwrap();
        assert_eq!(f.check(Some(v6)), Ok(()));
        assert_eq!(
            f.check(Some(v6)).unwrap_err().audit.as_deref(),
            Some("2001:db8:1:2::/64")
        );
        // Once the window is over, a refusal is audited again.
        let now = Instant::now();
        let block = block_of(a);
        let later = now + AUDIT_WINDOW;
        assert!(!f.first_in_window(block, now));
        assert!(f.first_in_window(block, later));
        assert!(!f.first_in_window(block, later + Duration::from_secs(59)));
    }

    #[test]
    fn the_audit_memory_is_bounded() {
        let f = flood(1);
        let now = Instant::now();
        for n in 0..FORGET_ABOVE {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(
                0x0a00_0000 + u32::try_from(n).unwrap(),
            ));
            assert!(f.first_in_window(addr, now));
        }
        // Full of fresh addresses: a new one is not remembered (nor audited)...
        let new: IpAddr = "198.51.100.200".parse().unwrap();
        assert!(!f.first_in_window(new, now));
        // ...until the old ones' window is over and they are dropped.
        assert!(f.first_in_window(new, now + AUDIT_WINDOW));
        assert_eq!(f.audited.lock().unwrap().len(), 1);
    }
}
