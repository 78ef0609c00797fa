//! How many TokenReviews `--token-passthrough` may send: anyone can present a made-up token, and
//! each review goes to a cluster with the proxy's own credentials. Without a bound, one client
//! with no credentials at all made the proxy send about 320 reviews a second.
//!
//! Two token buckets, both refilled continuously: one per client address and one for the whole
//! process. A review is counted only when it would really be sent (a cache miss that is not
//! already in flight), so tokens answered from the cache never touch the limiter; a request
//! over either bound gets 429 with `Retry-After`, as kube-apiserver's own limits answer.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Client addresses remembered at most; beyond that the idle ones go first (a full bucket
/// carries nothing worth keeping).
const MAX_CLIENTS: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Refills at `rate` per second up to `burst`, then takes one if there is one; otherwise
    /// how long until there is.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// The bounds: reviews per second for the process and per client address (bursts of twice
/// as many).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewRates {
    pub total: u32,
    pub per_client: u32,
}

pub struct ReviewLimiter {
    rates: ReviewRates,
    state: Mutex<State>,
}

struct State {
    total: Bucket,
    clients: HashMap<IpAddr, Bucket>,
}

impl ReviewLimiter {
    pub fn new(rates: ReviewRates) -> Self {
        let rates = ReviewRates {
            total: rates.total.max(1),
            per_client: rates.per_client.max(1),
        };
        let now = Instant::now();
        ReviewLimiter {
            rates,
            state: Mutex::new(State {
                total: Bucket::full(f64::from(rates.total) * 2.0, now),
                clients: HashMap::new(),
            }),
        }
    }

    /// One review for `client`, or how long to wait before asking again. IPv6 clients are
    /// counted by /64, the block one host is usually given: rotating addresses within it
    /// buys nothing.
    pub fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        self.admit_at(client_key(client), Instant::now())
    }

    fn admit_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let (total, per_client) = (f64::from(self.rates.total), f64::from(self.rates.per_client));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.clients.len() >= MAX_CLIENTS && !state.clients.contains_key(&client) {
            // Buckets refilled by now are the same as none.
            let refill = Duration::from_secs_f64(2.0);
            state
                .clients
                .retain(|_, b| now.saturating_duration_since(b.at) < refill);
            if state.clients.len() >= MAX_CLIENTS {
                // Every remembered client is busy: a new address waits like an exhausted one.
                return Err(Duration::from_secs(1));
            }
        }
        let mut mine = *state
            .clients
            .entry(client)
            .or_insert_with(|| Bucket::full(per_client * 2.0, now));
        mine.take(per_client, per_client * 2.0, now)?;
        // The client's token is only spent if the process has one too.
        let mut all = state.total;
        all.take(total, total * 2.0, now)?;
        state.total = all;
        state.clients.insert(client, mine);
        Ok(())
    }
}

/// The address a client's bucket is kept under: IPv4 as it is (an IPv4-mapped IPv6 address as
/// IPv4), IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_client_gets_its_burst_then_its_rate() {
        let l = ReviewLimiter::new(ReviewRates {
            total: 1000,
            per_client: 5,
        });
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        for i in 0..10 {
            assert_eq!(l.admit_at(a, t0), Ok(()), "burst {i}");
        }
        let wait = l.admit_at(a, t0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // Another address is not held back by the first.
        assert_eq!(l.admit_at(ip("10.0.0.2"), t0), Ok(()));
        // 5 a second: one more every 200 ms.
        assert_eq!(l.admit_at(a, t0 + Duration::from_millis(200)), Ok(()));
        assert!(l.admit_at(a, t0 + Duration::from_millis(250)).is_err());
    }

    #[test]
    fn the_total_bounds_many_clients_together() {
        let l = ReviewLimiter::new(ReviewRates {
            total: 10,
            per_client: 1000,
        });
        let t0 = Instant::now();
        let admitted = (0..100)
            .filter(|i| l.admit_at(ip(&format!("10.0.1.{i}")), t0).is_ok())
            .count();
        assert_eq!(
            admitted, 20,
            "the total's burst, whatever the number of addresses"
        );
        // A refused request spends nothing of its client's own bucket.
        let one_second = t0 + Duration::from_secs(1);
        assert_eq!(l.admit_at(ip("10.0.1.99"), one_second), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let l = ReviewLimiter::new(ReviewRates {
            total: 1000,
            per_client: 1,
        });
        for i in 0..2 {
            assert_eq!(l.admit(ip(&format!("2001:db8:1:2::{i}"))), Ok(()));
        }
        assert!(l.admit(ip("2001:db8:1:2:ffff::9")).is_err(), "same /64");
        assert_eq!(l.admit(ip("2001:db8:1:3::1")), Ok(()), "another /64");
        assert_eq!(client_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn remembered_clients_are_bounded() {
        let l = ReviewLimiter::new(ReviewRates {
            total: u32::MAX,
            per_client: 1,
        });
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let _ = l.admit_at(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.state.lock().unwrap().clients.len() <= MAX_CLIENTS);
        // Later, idle buckets make room again.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(l.admit_at(ip("192.0.2.1"), later), Ok(()));
    }
}
