//! Retry and backoff: the delay before each reconnect attempt, following the
//! reference's `lws_retry_get_delay_ms`, with randomness from a caller-seeded source.

use std::time::Duration;

/// A seeded pseudo-random source (splitmix64): the core never asks the OS for
/// randomness, so the same seed replays the same jitter.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 16 random bits, as the reference draws for jitter.
    pub fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }
}

/// A named backoff scheme from the policy's `retry` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The name streamtypes use to refer to it.
    pub name: String,
    /// Delay in ms before each retry in turn; the last repeats (`backoff`).
    pub backoff_ms: Vec<u32>,
    /// Retries hidden from the application before ALL_RETRIES_FAILED (`conceal`);
    /// 65535 means never stop.
    pub conceal: u16,
    /// Percentage of each delay that may be added at random (`jitterpc`);
    /// `None` takes the reference's default of 30.
    pub jitter_pc: Option<u8>,
    /// Seconds of idle before a validity ping is sent (`svalidping`).
    pub svalidping_s: Option<u32>,
    /// Seconds of idle before the connection is hung up (`svalidhup`).
    pub svalidhup_s: Option<u32>,
}

impl RetryPolicy {
    /// `conceal` value meaning "retry forever".
    pub const NEVER_STOP: u16 = 65535;
    /// Delay used when a policy has an empty backoff array (the reference's default).
    pub const DEFAULT_DELAY_MS: u32 = 3000;
    /// Jitter percentage used when a policy names none (the reference's default).
    pub const DEFAULT_JITTER_PC: u8 = 30;

    /// The delay before the next retry, or `None` when the retries are exhausted.
    ///
    /// `tries` counts the failures so far on this stream and is advanced here
    /// (saturating at 65535, so `conceal: 65535` never gives up). One random
    /// draw is consumed per call whatever the outcome, as in the reference.
    pub fn next_delay(&self, tries: &mut u16, rng: &mut Rng) -> Option<Duration> {
        let base = match self.backoff_ms.get(*tries as usize) {
            Some(ms) => *ms,
            None => self
                .backoff_ms
                .last()
                .copied()
                .unwrap_or(Self::DEFAULT_DELAY_MS),
        } as u64;
        let pc = self.jitter_pc.unwrap_or(Self::DEFAULT_JITTER_PC) as u64;
        let ra = rng.next_u16() as u64;
        let ms = base + ((base * pc * ra) >> 16) / 100;
        *tries = tries.saturating_add(1);
        (*tries <= self.conceal).then(|| Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;
    use super::*;
    use proptest::prelude::*;

    fn readme_default() -> RetryPolicy {
        // The reference README's example: backoff [1000, 2000, 3000, 5000, 10000], conceal 5, jitterpc 20.
        RetryPolicy {
            name: "default".into(),
            backoff_ms: vec![1000, 2000, 3000, 5000, 10000],
            conceal: 5,
            jitter_pc: Some(20),
            svalidping_s: None,
            svalidhup_s: None,
        }
    }

    #[test]
    fn readme_example_schedule() {
        let p = readme_default();
        let mut rng = Rng::new(7);
        let mut tries = 0;
        let mut delays = vec![];
        while let Some(d) = p.next_delay(&mut tries, &mut rng) {
            delays.push(d.as_millis() as u64);
        }
        assert_eq!(delays.len(), 5, "conceal 5 allows five retries");
        for (d, base) in delays.iter().zip([1000u64, 2000, 3000, 5000, 10000]) {
            assert!(
                *d >= base && *d <= base + base / 5,
                "{d} not in [{base}, {}]",
                base * 6 / 5
            );
        }
        // Exhausted stays exhausted.
        assert_eq!(p.next_delay(&mut tries, &mut rng), None);
    }

    #[test]
    fn conceal_beyond_table_repeats_last_entry() {
        let mut p = readme_default();
        p.conceal = 8;
        p.jitter_pc = Some(0);
        let mut rng = Rng::new(1);
        let mut tries = 0;
        let v: Vec<u64> = std::iter::from_fn(|| p.next_delay(&mut tries, &mut rng))
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(v, [1000, 2000, 3000, 5000, 10000, 10000, 10000, 10000]);
    }

    #[test]
    fn never_stop() {
        let mut p = readme_default();
        p.conceal = RetryPolicy::NEVER_STOP;
        let mut rng = Rng::new(3);
        let mut tries = 0;
        for _ in 0..70_000 {
            assert!(p.next_delay(&mut tries, &mut rng).is_some());
        }
        assert_eq!(tries, u16::MAX);
    }

    #[test]
    fn no_conceal_means_no_retry() {
        let mut p = readme_default();
        p.conceal = 0;
        let mut tries = 0;
        assert_eq!(p.next_delay(&mut tries, &mut Rng::new(0)), None);
    }

    proptest! {
        #[test]
        fn schedule_bounds(table in proptest::collection::vec(0u32..100_000, 0..8),
                           conceal in 0u16..40, jitter in proptest::option::of(0u8..=100),
                           seed in any::<u64>()) {
            let p = RetryPolicy { name: "p".into(), backoff_ms: table.clone(), conceal,
                                  jitter_pc: jitter, svalidping_s: None, svalidhup_s: None };
            let mut rng = Rng::new(seed);
            let mut tries = 0u16;
            let mut n = 0u16;
            while let Some(d) = p.next_delay(&mut tries, &mut rng) {
                let base = table.get(n as usize).or(table.last()).copied()
                    .unwrap_or(RetryPolicy::DEFAULT_DELAY_MS) as u128;
                let pc = jitter.unwrap_or(RetryPolicy::DEFAULT_JITTER_PC) as u128;
                prop_assert!(d.as_millis() >= base);
                prop_assert!(d.as_millis() <= base + base * pc / 100);
                n += 1;
                prop_assert!(n <= conceal);
            }
            prop_assert_eq!(n, conceal);
            // Same seed, same schedule.
            let mut a = Rng::new(seed); let mut b = Rng::new(seed);
            let (mut ta, mut tb) = (0, 0);
            for _ in 0..conceal { prop_assert_eq!(p.next_delay(&mut ta, &mut a), p.next_delay(&mut tb, &mut b)); }
        }
    }
}
