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

use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
};

use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};

/// Addresses remembered before the ones whose bucket refilled are dropped.
const FORGET_ABOVE: usize = 10_000;

/// Sign-in attempts per address: a keyed token bucket (`governor`).
#[derive(Debug)]
pub struct SignInFlood {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    per_minute: NonZeroU32,
}

impl SignInFlood {
    /// At most `per_minute` attempts a minute per address, all of them at once if need be.
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            per_minute,
        }
    }

    /// Takes one attempt for `addr`: `Err(seconds)` to wait when its allowance is spent.
    /// An unknown address (a Unix socket, a test client) is not limited here.
    pub fn check(&self, addr: Option<IpAddr>) -> Result<(), u64> {
        let Some(addr) = addr else {
            return Ok(());
        };
        if self.limiter.len() > FORGET_ABOVE {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&block_of(addr)) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                // Whole seconds, rounded up, and never 0: a client told "retry in 0 s"
                // would retry at once.
                Err(wait.as_secs() + 1)
            }
        }
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
        let wait = f.check(Some(a)).unwrap_err();
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
}
