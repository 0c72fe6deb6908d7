//! How far this computer's clock is from everyone else's (SPEC.md §7.5), and what the office is
//! told about it.
//!
//! Care-office PCs are often unmanaged, and clocks minutes or hours off are common. Envelopes
//! and acks are accepted from clocks up to `max_clock_skew_secs` (a day) off, so such a clock
//! does not stop the exchange; but the office should still set it right, and when a time
//! refusal does come, the office must be told whose clock is wrong and by how much — not that
//! the partner is unreachable.
//!
//! The node takes samples of the offset between its clock and another's from every source
//! that states its time: each directory node's answer to a time request (corrected by half the
//! round trip), each partner's ack (against the middle of the time between sealing and the
//! ack), the first envelope header of each incoming stream (its creation time), and a code-8
//! refusal (the receiver's time it names). Only the newest sample per source, taken within the
//! last day, counts. The estimate is the median of the sources; it is known only when at least
//! two sources are heard and more than half agree with the median, so one directory node or
//! partner with a wrong clock never makes the office think its own clock is wrong.

use std::collections::BTreeMap;

use renkei_protocol::OfficeNumber;
use renkei_protocol::envelope::EnvelopeHeader;
use renkei_protocol::frames::{Refusal, RefusalCode};
use renkei_protocol::session::RxAction;
use serde::{Deserialize, Serialize};

use crate::state::{Shared, lock};

/// A clock off by more than this is reported to the office (milliseconds).
pub const WARN_AFTER_MS: u64 = 60_000;

/// A sample counts for this long after it was taken (milliseconds on our clock).
const SAMPLE_LIFETIME_MS: u64 = 24 * 3600 * 1000;

/// A sample less certain than this is not kept: a large file's ack, say (milliseconds).
const MAX_UNCERTAINTY_MS: u64 = 30_000;

/// Sources kept at most (the oldest sample goes first).
const MAX_SOURCES: usize = 64;

/// One source's newest sample: how far our clock is ahead of the source's.
#[derive(Debug, Clone, Copy)]
struct Sample {
    offset_ms: i64,
    at_ms: u64,
}

/// The newest sample of each source.
#[derive(Debug, Default)]
pub(crate) struct ClockSamples {
    by_source: BTreeMap<String, Sample>,
    /// Whether the directory nodes are being asked their time now.
    asking: bool,
}

/// The source key of a directory node.
fn directory_node(peer: &libp2p::PeerId) -> String {
    format!("directory node {peer}")
}

/// The source key of a partner office.
fn office(o: &OfficeNumber) -> String {
    format!("office {o}")
}

impl ClockSamples {
    /// Records that our clock is `offset_ms` ahead of `source`'s (negative: behind), known to
    /// within `uncertainty_ms`, at our time `at_ms`.
    fn record(&mut self, source: String, offset_ms: i64, uncertainty_ms: u64, at_ms: u64) {
        if uncertainty_ms > MAX_UNCERTAINTY_MS {
            return;
        }
        self.by_source.insert(source, Sample { offset_ms, at_ms });
        while self.by_source.len() > MAX_SOURCES {
            let Some(oldest) = self
                .by_source
                .iter()
                .min_by_key(|(_, s)| s.at_ms)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.by_source.remove(&oldest);
        }
    }

    /// The samples that still count at `now_ms`, by source.
    fn current(&self, now_ms: u64) -> impl Iterator<Item = (&String, i64)> {
        self.by_source
            .iter()
            .filter(move |(_, s)| now_ms.abs_diff(s.at_ms) <= SAMPLE_LIFETIME_MS)
            .map(|(k, s)| (k, s.offset_ms))
    }

    /// How far our clock is ahead of everyone else's, when the sources agree
    /// ([`estimate`]); and how many sources count.
    fn estimate(&self, now_ms: u64) -> (Option<i64>, usize) {
        let offsets: Vec<i64> = self.current(now_ms).map(|(_, o)| o).collect();
        (estimate(&offsets), offsets.len())
    }

    /// The estimate without one source: what the others say of our clock. One other source
    /// is enough here (it only decides how a refusal by that source is worded).
    fn estimate_without(&self, source: &str, now_ms: u64) -> Option<i64> {
        let offsets: Vec<i64> = self
            .current(now_ms)
            .filter(|(k, _)| k.as_str() != source)
            .map(|(_, o)| o)
            .collect();
        match offsets.len() {
            0 => None,
            1 => Some(offsets[0]),
            _ => estimate(&offsets),
        }
    }

    /// The current sample of one source.
    fn of(&self, source: &str, now_ms: u64) -> Option<i64> {
        self.current(now_ms)
            .find(|(k, _)| k.as_str() == source)
            .map(|(_, o)| o)
    }
}

/// The offset the sources agree on: the median (of two middle values, the one nearer zero),
/// when at least two sources are given and more than half of them lie within a minute (or a
/// tenth of the median, whichever is more) of it. `None`: not known.
pub fn estimate(offsets: &[i64]) -> Option<i64> {
    if offsets.len() < 2 {
        return None;
    }
    let mut v = offsets.to_vec();
    v.sort_unstable();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        let (a, b) = (v[n / 2 - 1], v[n / 2]);
        if a.unsigned_abs() <= b.unsigned_abs() {
            a
        } else {
            b
        }
    };
    let tolerance = WARN_AFTER_MS.max(median.unsigned_abs() / 10);
    let agree = v.iter().filter(|x| x.abs_diff(median) <= tolerance).count();
    (agree * 2 > n).then_some(median)
}

/// An amount of time as an office reads it: about so many minutes, hours or days.
pub fn amount(ms: u64) -> (String, String) {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("{n} {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    let minutes = ms.saturating_add(30_000) / 60_000;
    if minutes < 90 {
        let m = minutes.max(1);
        return (format!("{m}分"), plural(m, "minute"));
    }
    let hours = ms.saturating_add(1_800_000) / 3_600_000;
    if hours < 36 {
        return (format!("{hours}時間"), plural(hours, "hour"));
    }
    let days = ms.saturating_add(43_200_000) / 86_400_000;
    (format!("{days}日"), plural(days, "day"))
}

/// "about 15 minutes fast" of our clock, in both languages: (進んでいます / 遅れています, fast
/// / slow).
fn fast_or_slow(offset_ms: i64) -> (String, String) {
    let (ja, en) = amount(offset_ms.unsigned_abs());
    if offset_ms >= 0 {
        (format!("約{ja}進んでいます"), format!("about {en} fast"))
    } else {
        (format!("約{ja}遅れています"), format!("about {en} slow"))
    }
}

/// What `renkei status` says about this computer's clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStatus {
    /// How far this computer's clock is ahead of its directory nodes' and partners'
    /// (milliseconds; negative: behind), when they agree; `None` while not known.
    pub offset_ms: Option<i64>,
    /// How many sources (directory nodes, partners) stated their time in the last day.
    pub sources: usize,
    /// The office is told first, when the clock is off by more than a minute.
    pub warning: Option<String>,
}

/// The warning about our own clock, off by `offset_ms`, with partners accepting up to
/// `max_skew_ms` of difference.
pub fn own_clock_warning(offset_ms: i64, max_skew_ms: u64) -> String {
    let (ja, en) = fast_or_slow(offset_ms);
    let mut line = format!(
        "このパソコンの時計が{ja}。時刻を自動で合わせる設定にしてください / This computer's clock is {en}: set it to update automatically."
    );
    if offset_ms.unsigned_abs() > max_skew_ms {
        let (ja, en) = amount(max_skew_ms);
        line.push_str(&format!(
            " 相手先が受け付ける時刻のずれ（{ja}）を超えているため、時計が合うまでファイルを送受信できません / That is more than the {en} of difference partners accept: no file can be sent or received until it is set right."
        ));
    }
    line
}

impl ClockStatus {
    /// The status of `samples` at `now_ms`.
    fn of(samples: &ClockSamples, now_ms: u64, max_skew_ms: u64) -> ClockStatus {
        let (offset_ms, sources) = samples.estimate(now_ms);
        ClockStatus {
            offset_ms,
            sources,
            warning: offset_ms
                .filter(|o| o.unsigned_abs() > WARN_AFTER_MS)
                .map(|o| own_clock_warning(o, max_skew_ms)),
        }
    }

    /// A note for times shown to people: they are this computer's, off by so much.
    pub fn times_note(&self) -> Option<String> {
        let o = self
            .offset_ms
            .filter(|o| o.unsigned_abs() > WARN_AFTER_MS)?;
        let (ja, en) = fast_or_slow(o);
        Some(format!(
            "表示の時刻はこのパソコンの時計によるもので、その時計は{ja} / times shown are by this computer's clock, which is {en}"
        ))
    }
}

/// The tolerated clock error of a node, in milliseconds.
fn max_skew_ms(shared: &Shared) -> u64 {
    shared.config.max_clock_skew_secs.saturating_mul(1000)
}

/// This node's clock status now.
pub(crate) fn status(shared: &Shared) -> ClockStatus {
    let now = shared.env.now_ms();
    ClockStatus::of(&lock(&shared.stats).clock, now, max_skew_ms(shared))
}

fn record(shared: &Shared, source: String, offset_ms: i64, uncertainty_ms: u64) {
    let now = shared.env.now_ms();
    lock(&shared.stats)
        .clock
        .record(source, offset_ms, uncertainty_ms, now);
}

/// Signed difference `a − b` of two Unix millisecond times.
fn diff(a: u64, b: u64) -> i64 {
    if a >= b {
        i64::try_from(a - b).unwrap_or(i64::MAX)
    } else {
        i64::try_from(b - a).map_or(i64::MIN, |d| -d)
    }
}

/// A directory node answered a time request with `server_ms`, asked at our `sent_ms` and
/// answered at our `got_ms`.
pub(crate) fn directory_node_answered(
    shared: &Shared,
    peer: &libp2p::PeerId,
    server_ms: u64,
    sent_ms: u64,
    got_ms: u64,
) {
    let middle = sent_ms / 2 + got_ms / 2;
    record(
        shared,
        directory_node(peer),
        diff(middle, server_ms),
        got_ms.saturating_sub(sent_ms) / 2,
    );
}

/// A directory node is asked its time again once its last sample is this old (milliseconds).
const TIME_SAMPLE_EVERY_MS: u64 = 3600 * 1000;

/// How long a directory node is given to answer a time request.
const TIME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Asks every configured directory node its time (an older node that does not answer time
/// requests is skipped), unless an earlier round still is: run beside the directory sync, so
/// a node that does not answer never holds it up.
pub(crate) async fn sample_directory_nodes(shared: std::sync::Arc<Shared>) {
    if std::mem::replace(&mut lock(&shared.stats).clock.asking, true) {
        return;
    }
    ask_directory_nodes(&shared).await;
    lock(&shared.stats).clock.asking = false;
}

async fn ask_directory_nodes(shared: &Shared) {
    for addr in &shared.config.directory_nodes {
        let Ok(ma) = addr.parse::<libp2p::Multiaddr>() else {
            continue;
        };
        let Some(peer) = ma.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        }) else {
            continue;
        };
        // A sample counts for a day: one an hour per node is plenty, not one per sync.
        let now = shared.env.now_ms();
        let fresh = lock(&shared.stats)
            .clock
            .by_source
            .get(&directory_node(&peer))
            .is_some_and(|s| now.abs_diff(s.at_ms) < TIME_SAMPLE_EVERY_MS);
        if fresh {
            continue;
        }
        shared.net.command(crate::net::Command::Pin(peer));
        shared.net.add_address(peer, ma.clone()).await;
        let mut source = crate::dirsync::P2pSource {
            net: shared.net.clone(),
            peer,
            timeout: shared.timeout().min(TIME_TIMEOUT),
            jitter_seed: shared.env.random_below_for("time samples", u64::MAX),
        };
        let sent = shared.env.now_ms();
        match source.time().await {
            Ok(server_ms) => {
                directory_node_answered(shared, &peer, server_ms, sent, shared.env.now_ms());
            }
            Err(e) => tracing::debug!(%peer, "no time from the directory node: {e:#}"),
        }
    }
}

/// A partner's ack signed at its `received_at` (Unix seconds) for a message we sealed at
/// our `sealed_ms`. (An ack repeated for a message received before carries its first time;
/// the partner's next ack replaces such a sample.)
pub(crate) fn ack_received(
    shared: &Shared,
    partner: &OfficeNumber,
    sealed_ms: u64,
    received_at: u64,
) {
    let now = shared.env.now_ms();
    let theirs = received_at.saturating_mul(1000).saturating_add(500);
    let ours = sealed_ms / 2 + now / 2;
    record(
        shared,
        office(partner),
        diff(ours, theirs),
        now.saturating_sub(sealed_ms) / 2 + 500,
    );
}

/// How a partner's refusal for time (code 8) reads in the status: whose clock is wrong and by
/// about how much. Records the receiver's time it names as a sample first.
pub(crate) fn refused_for_time(shared: &Shared, partner: &OfficeNumber, r: &Refusal) -> String {
    if let Some(t) = r.receiver_time() {
        let now = shared.env.now_ms();
        record(
            shared,
            office(partner),
            diff(now, t.saturating_mul(1000).saturating_add(500)),
            1000,
        );
    }
    let what_ja = format!("送信先 {partner} が時刻のずれを理由に受け取りを拒否しました");
    let what_en = format!("delivery to {partner} refused for the time");
    let retried = (
        "時計が合えば自動で再送します",
        "the files go out by themselves once the clocks agree",
    );
    match blame(shared, &office(partner)) {
        Blame::Us(o) => {
            let (ja, en) = fast_or_slow(o);
            format!(
                "{what_ja}。このパソコンの時計が{ja}。時刻を自動で合わせる設定にしてください。{} / {what_en}: this computer's clock is {en}; set it to update automatically — {}.",
                retried.0, retried.1
            )
        }
        Blame::Them(o) => {
            let (ja, en) = ahead_or_behind(o);
            format!(
                "{what_ja}。相手先のパソコンの時計がこのパソコンより{ja}。相手先に、時刻を自動で合わせる設定にするよう連絡してください。{} / {what_en}: the partner's computer clock is {en} this one's; ask the partner to set its clock to update automatically — {}.",
                retried.0, retried.1
            )
        }
        Blame::Either(o) => {
            let (ja, en) = amount(o.unsigned_abs());
            format!(
                "{what_ja}。このパソコンと相手先のパソコンの時計が約{ja}ずれています。両方の時計を確かめ、時刻を自動で合わせる設定にしてください。{} / {what_en}: this computer's clock and the partner's differ by about {en}; check both and set them to update automatically — {}.",
                retried.0, retried.1
            )
        }
        Blame::Unknown => format!(
            "{what_ja}。このパソコンか相手先のパソコンの時計が大きくずれています。両方の時計を確かめ、時刻を自動で合わせる設定にしてください。{} / {what_en}: this computer's clock or the partner's is far off; check both and set them to update automatically — {}.",
            retried.0, retried.1
        ),
    }
}

/// "about 2 days ahead of" a partner's clock relative to ours, given our offset from it.
fn ahead_or_behind(our_offset_ms: i64) -> (String, String) {
    let (ja, en) = amount(our_offset_ms.unsigned_abs());
    // Our clock ahead of theirs: theirs is behind ours.
    if our_offset_ms >= 0 {
        (format!("約{ja}遅れています"), format!("about {en} behind"))
    } else {
        (
            format!("約{ja}進んでいます"),
            format!("about {en} ahead of"),
        )
    }
}

/// Whose clock a time refusal between us and `source` is to be put down to.
enum Blame {
    /// Ours, off by so much.
    Us(i64),
    /// The source's: our clock is so much ahead of it.
    Them(i64),
    /// The two differ by so much, and nothing tells whose is wrong.
    Either(i64),
    /// Nothing is known.
    Unknown,
}

fn blame(shared: &Shared, source: &str) -> Blame {
    let now = shared.env.now_ms();
    let samples = &lock(&shared.stats).clock;
    let (ours, _) = samples.estimate(now);
    let theirs = samples.of(source, now);
    match (ours, theirs) {
        (Some(o), _) if o.unsigned_abs() > WARN_AFTER_MS => Blame::Us(o),
        (Some(_), Some(t)) => Blame::Them(t),
        (None, Some(t)) => match samples.estimate_without(source, now) {
            Some(others) if others.unsigned_abs() <= WARN_AFTER_MS => Blame::Them(t),
            Some(others) if others.abs_diff(t) <= WARN_AFTER_MS.max(t.unsigned_abs() / 10) => {
                Blame::Us(others)
            }
            _ => Blame::Either(t),
        },
        _ => Blame::Unknown,
    }
}

/// The status topic of a partner's envelopes refused for time.
fn topic(sender: &OfficeNumber) -> String {
    format!("clock:{sender}")
}

/// A header frame read on an incoming stream, with what the receiver made of it. The first
/// verified header of a stream is a sample of the sender's clock (its creation time); a
/// header refused for time is reported as a clock problem, whose and by how much.
pub(crate) fn header_seen(shared: &Shared, frame: &[u8], action: &RxAction, first: &mut bool) {
    let refused_for_time = matches!(action, RxAction::Refuse(r) if r.code == RefusalCode::Clock);
    // Signed and checked before its time is: the creation time is the sender's.
    let verified = refused_for_time || matches!(action, RxAction::Begin(_) | RxAction::Repeat(_));
    if !verified {
        return;
    }
    let Ok((header, _)) = EnvelopeHeader::parse(frame) else {
        return;
    };
    let sender = header.sender_office;
    if std::mem::take(first) || refused_for_time {
        let now = shared.env.now_ms();
        let created = header.created_at.saturating_mul(1000).saturating_add(500);
        record(shared, office(&sender), diff(now, created), 1000);
    }
    if !refused_for_time {
        shared.resolved(&topic(&sender));
        return;
    }
    let what_ja = format!("送信元 {sender} からのファイルを、時刻のずれのため受け取れませんでした");
    let what_en = format!("files from {sender} cannot be accepted for the time");
    let line = match blame(shared, &office(&sender)) {
        Blame::Us(o) => {
            let (ja, en) = fast_or_slow(o);
            format!(
                "{what_ja}。このパソコンの時計が{ja}。時刻を自動で合わせる設定にしてください。相手先が自動で送り直します / {what_en}: this computer's clock is {en}; set it to update automatically — the partner sends again by itself."
            )
        }
        Blame::Them(o) => {
            let (ja, en) = ahead_or_behind(o);
            format!(
                "{what_ja}。相手先のパソコンの時計がこのパソコンより{ja}。相手先に、時刻を自動で合わせる設定にするよう連絡してください / {what_en}: the partner's computer clock is {en} this one's; ask the partner to set its clock to update automatically."
            )
        }
        Blame::Either(o) => {
            let (ja, en) = amount(o.unsigned_abs());
            format!(
                "{what_ja}。このパソコンと相手先のパソコンの時計が約{ja}ずれています。両方の時計を確かめ、時刻を自動で合わせる設定にしてください / {what_en}: this computer's clock and the partner's differ by about {en}; check both and set them to update automatically."
            )
        }
        Blame::Unknown => format!(
            "{what_ja}。このパソコンか相手先のパソコンの時計が大きくずれています / {what_en}: this computer's clock or the partner's is far off."
        ),
    };
    shared.error_about(Some(topic(&sender)), line);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;

    #[test]
    fn one_source_or_a_split_is_not_enough_to_doubt_our_clock() {
        assert_eq!(estimate(&[]), None);
        assert_eq!(estimate(&[15 * MIN]), None);
        // A directory node an hour off, a partner in step: nothing is concluded.
        assert_eq!(estimate(&[-HOUR, 0]), None);
        // Two sources agree: our clock is 15 minutes fast.
        assert_eq!(estimate(&[15 * MIN, 15 * MIN + 2_000]), Some(15 * MIN));
        // Three, one of them an outlier: the other two decide.
        assert_eq!(estimate(&[-HOUR, 3_000, -2_000]), Some(-2_000));
        assert_eq!(estimate(&[2 * HOUR, 2 * HOUR + 5_000, 0]), Some(2 * HOUR));
        // All disagree: not known.
        assert_eq!(estimate(&[-HOUR, 0, HOUR]), None);
    }

    #[test]
    fn amounts_read_as_an_office_would_say_them() {
        assert_eq!(
            amount(15 * 60_000 + 4_000),
            ("15分".into(), "15 minutes".into())
        );
        assert_eq!(amount(50_000), ("1分".into(), "1 minute".into()));
        assert_eq!(
            amount(3 * 3_600_000 - 60_000),
            ("3時間".into(), "3 hours".into())
        );
        assert_eq!(amount(3_600_000 * 2), ("2時間".into(), "2 hours".into()));
        assert_eq!(
            amount(2 * 86_400_000 + 3_000),
            ("2日".into(), "2 days".into())
        );
        assert_eq!(
            own_clock_warning(15 * MIN, 86_400_000),
            "このパソコンの時計が約15分進んでいます。時刻を自動で合わせる設定にしてください / This computer's clock is about 15 minutes fast: set it to update automatically."
        );
        assert!(own_clock_warning(-2 * HOUR, 86_400_000).contains("約2時間遅れています"));
        assert!(own_clock_warning(-2 * HOUR, 86_400_000).contains("about 2 hours slow"));
        assert!(own_clock_warning(3 * 24 * HOUR, 86_400_000).contains("no file can be sent"));
    }

    #[test]
    fn samples_expire_and_the_newest_per_source_counts() {
        let mut s = ClockSamples::default();
        s.record("a".into(), 15 * MIN, 100, 1_000);
        s.record("b".into(), 15 * MIN, 100, 1_000);
        assert_eq!(s.estimate(2_000), (Some(15 * MIN), 2));
        // The clock set right: the sources say so again.
        s.record("a".into(), 0, 100, 5_000);
        s.record("b".into(), 1_000, 100, 5_000);
        assert_eq!(s.estimate(6_000), (Some(0), 2));
        // Too uncertain: not kept.
        s.record("c".into(), HOUR, MAX_UNCERTAINTY_MS + 1, 6_000);
        assert_eq!(s.estimate(6_000).1, 2);
        // A day later nothing counts.
        assert_eq!(s.estimate(6_000 + SAMPLE_LIFETIME_MS + 1), (None, 0));
    }
}
