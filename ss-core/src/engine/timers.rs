//! The engine's timers: one deadline per (kind, owner), ordered by time.

use super::{ConnId, StreamId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Backoff before a stream's next connection attempt.
    Retry(StreamId),
    /// The application's `start_timeout`.
    UserTimeout(StreamId),
    /// A connection attempt's deadline.
    ConnectTimeout(ConnId),
    /// An idle kept-alive connection's end.
    PoolIdle(ConnId),
    /// An HTTP transaction that has heard nothing from the server for too long.
    HttpSilence(ConnId),
    /// An MQTT session's keep-alive / response deadline.
    Mqtt(ConnId),
    /// A connection's validity check (the retry policy's `svalidping` / `svalidhup`).
    Validity(ConnId),
}

/// Deadlines, at most one per [`Timer`], in time order.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_time: BTreeSet<(Instant, Timer)>,
    by_key: BTreeMap<Timer, Instant>,
}

impl Timers {
    /// Arm `t` for `at`, replacing any earlier deadline for it.
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.cancel(t);
        self.by_time.insert((at, t));
        self.by_key.insert(t, at);
    }

    /// Disarm `t`.
    pub fn cancel(&mut self, t: Timer) {
        if let Some(at) = self.by_key.remove(&t) {
            self.by_time.remove(&(at, t));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Remove and return a timer due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let &(at, t) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.remove(&(at, t));
        self.by_key.remove(&t);
        Some(t)
    }
}
