//! When to try each partner again (SPEC.md §7.2, dispatcher): retry and backoff as data, on
//! the caller's clock.

use std::collections::HashMap;
use std::hash::Hash;

/// The retry policy: the first delay after a failure, doubling on each further failure up to
/// the longest, and back to nothing after a success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay, milliseconds.
    pub initial_ms: u64,
    /// Longest delay, milliseconds.
    pub max_ms: u64,
}

#[derive(Clone, Copy, Debug)]
struct Partner {
    active: bool,
    next_try_ms: u64,
    delay_ms: u64,
    failures: u32,
}

/// Per partner: whether a delivery runs, and when the next may start. At most one delivery per
/// partner runs at a time.
///
/// ```
/// use renkei_protocol::session::{Backoff, Schedule};
/// let mut s = Schedule::new(Backoff { initial_ms: 500, max_ms: 2_000 });
/// assert_eq!(s.due(0, ["B"]), (vec!["B"], None));
/// assert_eq!(s.failed(&"B", 0), 500);
/// assert_eq!(s.due(100, ["B"]), (vec![], Some(500)));
/// assert_eq!(s.due(500, ["B"]), (vec!["B"], None));
/// assert_eq!(s.failed(&"B", 500), 1_500);
/// ```
#[derive(Debug)]
pub struct Schedule<K> {
    backoff: Backoff,
    partners: HashMap<K, Partner>,
}

impl<K: Hash + Eq + Clone> Schedule<K> {
    /// An empty schedule.
    pub fn new(backoff: Backoff) -> Schedule<K> {
        Schedule {
            backoff,
            partners: HashMap::new(),
        }
    }

    /// Of the partners with work `pending`, those whose delivery may start at `now_ms` (now
    /// marked running), and the earliest time another becomes due.
    pub fn due(
        &mut self,
        now_ms: u64,
        pending: impl IntoIterator<Item = K>,
    ) -> (Vec<K>, Option<u64>) {
        let mut start = Vec::new();
        let mut next: Option<u64> = None;
        for k in pending {
            let p = self.partners.entry(k.clone()).or_insert(Partner {
                active: false,
                next_try_ms: now_ms,
                delay_ms: self.backoff.initial_ms,
                failures: 0,
            });
            if p.active {
                continue;
            }
            if p.next_try_ms <= now_ms {
                p.active = true;
                start.push(k);
            } else {
                next = Some(next.map_or(p.next_try_ms, |n| n.min(p.next_try_ms)));
            }
        }
        (start, next)
    }

    /// A delivery ended well: the partner may be tried again at once.
    pub fn succeeded(&mut self, k: &K, now_ms: u64) {
        if let Some(p) = self.partners.get_mut(k) {
            p.active = false;
            p.next_try_ms = now_ms;
            p.delay_ms = self.backoff.initial_ms;
            p.failures = 0;
        }
    }

    /// A delivery failed: returns when the partner is due again.
    pub fn failed(&mut self, k: &K, now_ms: u64) -> u64 {
        let backoff = self.backoff;
        let p = self.partners.entry(k.clone()).or_insert(Partner {
            active: false,
            next_try_ms: now_ms,
            delay_ms: backoff.initial_ms,
            failures: 0,
        });
        p.active = false;
        p.next_try_ms = now_ms.saturating_add(p.delay_ms);
        p.delay_ms = p.delay_ms.saturating_mul(2).min(backoff.max_ms.max(1));
        p.failures = p.failures.saturating_add(1);
        p.next_try_ms
    }

    /// Failures in a row for a partner since its last success.
    pub fn failures(&self, k: &K) -> u32 {
        self.partners.get(k).map_or(0, |p| p.failures)
    }

    /// Forgets partners with no work pending and no delivery running (bounded memory).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.partners.retain(|k, p| p.active || keep(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_delivery_per_partner_and_backoff_doubles_to_its_cap() {
        let mut s = Schedule::new(Backoff {
            initial_ms: 100,
            max_ms: 350,
        });
        assert_eq!(s.due(0, ["A", "B"]).0.len(), 2);
        // Running: not started twice.
        assert_eq!(s.due(0, ["A", "B"]), (vec![], None));
        assert_eq!(s.failed(&"A", 0), 100);
        assert_eq!(s.failed(&"A", 100), 300);
        assert_eq!(s.failed(&"A", 300), 650);
        assert_eq!(s.failed(&"A", 650), 1000);
        assert_eq!(s.failures(&"A"), 4);
        assert_eq!(s.due(999, ["A"]), (vec![], Some(1000)));
        s.succeeded(&"A", 1000);
        assert_eq!(s.failures(&"A"), 0);
        assert_eq!(s.failed(&"A", 1000), 1100);
        // B is still running; once it ends it is due at once.
        s.succeeded(&"B", 5);
        assert_eq!(s.due(5, ["B"]), (vec!["B"], None));
        s.retain(|_| false);
        assert_eq!(s.failures(&"A"), 0);
    }
}
