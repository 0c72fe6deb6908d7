//! What a node takes from outside: a clock, a random source and fault points. The only module
//! that reads the wall clock.
//!
//! Production nodes get [`Env::system`]: the system clock and the operating system's random
//! numbers, no faults. Tests and the lab give a node a [`ManualClock`] they move forward, a
//! seeded random source (the same seed gives the same message ids and keys), and fault points
//! that crash one node without taking the process down.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tokio::sync::watch;

/// Where a node's sense of time comes from: Unix milliseconds now, and waiting until a time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Unix milliseconds now.
    fn now_ms(&self) -> u64;
    /// Completes once [`Clock::now_ms`] has reached `deadline_ms`.
    fn sleep_until(&self, deadline_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// The computer's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Unix milliseconds by the system clock (0 before 1970).
fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }

    fn sleep_until(&self, deadline_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let wait = deadline_ms.saturating_sub(system_now_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that moves only when told to: tests and the lab set the time, and every node
/// waiting on it wakes when its time has come — in the order of their deadlines, and of their
/// first waits for one deadline, so that a lab run wakes its nodes in the same order every
/// time. (Tokio's `watch` channel, which this was, files its waiters under eight lists picked
/// at random, and wakes them list by list.)
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<Sleepers>>,
}

#[derive(Debug, Default)]
struct Sleepers {
    now: u64,
    /// Waits not yet due: (deadline, order of its first wait) → its waker.
    waiting: std::collections::BTreeMap<(u64, u64), std::task::Waker>,
    next: u64,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock {
            inner: Arc::new(Mutex::new(Sleepers {
                now: start_ms,
                ..Sleepers::default()
            })),
        }
    }

    /// Moves the clock forward by `by` (never backward).
    pub fn advance(&self, by: Duration) {
        let mut s = self.lock();
        s.now = s.now.saturating_add(by.as_millis() as u64);
        self.wake_due(s);
    }

    /// Sets the clock (it may go backward, as a wrongly set computer clock does).
    pub fn set(&self, ms: u64) {
        let mut s = self.lock();
        s.now = ms;
        self.wake_due(s);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sleepers> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes, in order, every wait now due (outside the lock: a woken task may run at once).
    fn wake_due(&self, mut s: std::sync::MutexGuard<'_, Sleepers>) {
        let first_not_due = (s.now.saturating_add(1), 0);
        let later = s.waiting.split_off(&first_not_due);
        let due = std::mem::replace(&mut s.waiting, later);
        drop(s);
        for (_, waker) in due {
            waker.wake();
        }
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.lock().now
    }

    fn sleep_until(&self, deadline_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(ManualSleep {
            clock: self.clone(),
            deadline: deadline_ms,
            key: None,
        })
    }
}

/// A wait on a [`ManualClock`].
struct ManualSleep {
    clock: ManualClock,
    deadline: u64,
    /// Its place among the clock's waits, once it has waited.
    key: Option<(u64, u64)>,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let clock = self.clock.clone();
        let mut s = clock.lock();
        if s.now >= self.deadline {
            let old = self.key.take().and_then(|k| s.waiting.remove(&k));
            drop(s);
            drop(old);
            return std::task::Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let k = (self.deadline, s.next);
                s.next += 1;
                self.key = Some(k);
                k
            }
        };
        // Woken already and polled again before its time (another branch of a select): it
        // keeps its place. The waker it replaces is dropped outside the lock.
        let old = s.waiting.insert(key, cx.waker().clone());
        drop(s);
        drop(old);
        std::task::Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let old = self.clock.lock().waiting.remove(&k);
            drop(old);
        }
    }
}

/// Another clock shifted by a fixed offset: a computer whose clock is set wrong by minutes,
/// hours or days, in the lab and in tests. It waits as its base does: a sleep until a time on
/// this clock ends when the base reaches that time less the offset.
#[derive(Debug, Clone)]
pub struct OffsetClock {
    base: Arc<dyn Clock>,
    offset_ms: i64,
}

impl OffsetClock {
    /// `base` shifted by `offset_ms` (positive: ahead, "fast"; negative: behind, "slow").
    pub fn new(base: Arc<dyn Clock>, offset_ms: i64) -> OffsetClock {
        OffsetClock { base, offset_ms }
    }
}

/// `ms` moved by `by`, within `u64`.
fn shift(ms: u64, by: i64) -> u64 {
    if by >= 0 {
        ms.saturating_add(by.unsigned_abs())
    } else {
        ms.saturating_sub(by.unsigned_abs())
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> u64 {
        shift(self.base.now_ms(), self.offset_ms)
    }

    fn sleep_until(&self, deadline_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.base
            .sleep_until(shift(deadline_ms, self.offset_ms.saturating_neg()))
    }
}

/// A place in the node's work where a fault can be injected (SPEC.md §7.3's crash points, and
/// the network's failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// The receiver crashes with a batch checked, before its intent is recorded.
    CrashBeforeInboxWrite,
    /// The receiver crashes with the batch's intent durable, before any file is renamed into
    /// `inbox/`.
    CrashAfterIntent,
    /// The receiver crashes with the batch durable in `inbox/`, before receipts and acks.
    CrashAfterInboxWrite,
    /// The receiver crashes with the batch's receipts durable, before the received index and
    /// the acks.
    CrashAfterReceivedReceipts,
    /// The receiver crashes with receipts and the received index durable, before the acks
    /// are written.
    CrashBeforeAck,
    /// The sender crashes with the partner's acks durable in its receipts, before the files
    /// move out of `outbox/`.
    CrashAfterSentReceipts,
    /// The receiver drops the stream in the middle of a message.
    DropConnection,
    /// The receiver refuses the next message as busy (refusal 14).
    RefuseBusy,
    /// The next receipt append fails as a full disk would (the node itself runs on).
    DiskFull,
    /// The node loses power now (not armed: [`Faults::crash_now`]).
    PowerCut,
}

impl FaultPoint {
    /// Every fault point.
    pub const ALL: [FaultPoint; 10] = [
        FaultPoint::CrashBeforeInboxWrite,
        FaultPoint::CrashAfterIntent,
        FaultPoint::CrashAfterInboxWrite,
        FaultPoint::CrashAfterReceivedReceipts,
        FaultPoint::CrashBeforeAck,
        FaultPoint::CrashAfterSentReceipts,
        FaultPoint::DropConnection,
        FaultPoint::RefuseBusy,
        FaultPoint::DiskFull,
        FaultPoint::PowerCut,
    ];

    /// Its name in `RENKEI_FAULT` and scenario files.
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::CrashBeforeInboxWrite => "crash-before-inbox-write",
            FaultPoint::CrashAfterIntent => "crash-after-intent",
            FaultPoint::CrashAfterInboxWrite => "crash-after-inbox-write",
            FaultPoint::CrashAfterReceivedReceipts => "crash-after-received-receipts",
            FaultPoint::CrashBeforeAck => "crash-before-ack",
            FaultPoint::CrashAfterSentReceipts => "crash-after-sent-receipts",
            FaultPoint::DropConnection => "drop-connection",
            FaultPoint::RefuseBusy => "refuse-busy",
            FaultPoint::DiskFull => "disk-full",
            FaultPoint::PowerCut => "power-cut",
        }
    }

    /// The point of a name.
    pub fn parse(name: &str) -> Option<FaultPoint> {
        FaultPoint::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether hitting it crashes the node.
    pub fn is_crash(self) -> bool {
        matches!(
            self,
            FaultPoint::CrashBeforeInboxWrite
                | FaultPoint::CrashAfterIntent
                | FaultPoint::CrashAfterInboxWrite
                | FaultPoint::CrashAfterReceivedReceipts
                | FaultPoint::CrashBeforeAck
                | FaultPoint::CrashAfterSentReceipts
                | FaultPoint::PowerCut
        )
    }
}

/// A node's armed fault points. A crash stops this node's tasks at once — no clean shutdown,
/// nothing written after the fault point — while the rest of the process runs on.
#[derive(Debug)]
pub struct Faults {
    armed: Mutex<HashMap<FaultPoint, u32>>,
    crashed: watch::Sender<Option<FaultPoint>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            armed: Mutex::new(HashMap::new()),
            crashed: watch::Sender::new(None),
        }
    }
}

/// A crash fault fired: the work that met it stops here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected fault: {0:?}")]
pub struct Crashed(pub FaultPoint);

impl Faults {
    /// Arms `point` to fire on its `skip + 1`-th hit (once).
    pub fn arm(&self, point: FaultPoint, skip: u32) {
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(point, skip);
    }

    /// Passes `point`: `true` when it fires now. A crash point also marks the node crashed.
    pub fn hit(&self, point: FaultPoint) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let fire = match armed.get_mut(&point) {
            Some(0) => {
                armed.remove(&point);
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        };
        drop(armed);
        if fire {
            tracing::error!(fault = point.name(), "injected fault");
            if point.is_crash() {
                self.crashed.send_replace(Some(point));
            }
        }
        fire
    }

    /// Crashes the node now, wherever its work stands.
    pub fn crash_now(&self) {
        self.crashed.send_replace(Some(FaultPoint::PowerCut));
    }

    /// `Err` when the crash point `point` fires.
    pub fn crash_point(&self, point: FaultPoint) -> Result<(), Crashed> {
        if self.hit(point) {
            Err(Crashed(point))
        } else {
            Ok(())
        }
    }

    /// Whether a crash fault has fired.
    pub fn has_crashed(&self) -> bool {
        self.crashed.borrow().is_some()
    }

    /// `Err` once a crash fault has fired: in a process that goes on after one of its nodes
    /// crashed, every durable write of that node checks this first, so nothing more is
    /// written than a dead process would have written.
    pub fn alive(&self) -> Result<(), Crashed> {
        match *self.crashed.borrow() {
            Some(p) => Err(Crashed(p)),
            None => Ok(()),
        }
    }

    /// Completes when a crash fault fires.
    pub fn crashed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.crashed.subscribe();
        async move {
            let _ = rx.wait_for(|c| c.is_some()).await;
        }
    }
}

enum Random {
    System,
    /// The node's main stream (sealing), and one stream per purpose (message ids, poll
    /// jitter …): a purpose draws the same numbers whichever of the node's tasks happened to
    /// draw first, so a seeded run repeats even where tasks interleave differently.
    Seeded {
        seed: u64,
        /// The clock's time when the node's source was made: draws at a time are keyed by
        /// the time since, so a run started at another minute draws the same.
        origin: u64,
        main: Box<Mutex<ChaCha20Rng>>,
        purposes: Mutex<HashMap<&'static str, ChaCha20Rng>>,
    },
}

/// The clock, random source and fault points of one node.
pub struct Env {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    random: Random,
    /// The fault points.
    pub faults: Faults,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("clock", &self.clock)
            .field(
                "random",
                &match self.random {
                    Random::System => "system",
                    Random::Seeded { .. } => "seeded",
                },
            )
            .finish_non_exhaustive()
    }
}

impl Env {
    /// The system clock and the operating system's random numbers.
    pub fn system() -> Env {
        Env {
            clock: Arc::new(SystemClock),
            random: Random::System,
            faults: Faults::default(),
        }
    }

    /// `clock` and a random source seeded with `seed`: the same seed, the same draws.
    pub fn seeded(clock: Arc<dyn Clock>, seed: u64) -> Env {
        let origin = clock.now_ms();
        Env {
            clock,
            random: Random::Seeded {
                seed,
                origin,
                main: Box::new(Mutex::new(ChaCha20Rng::seed_from_u64(seed))),
                purposes: Mutex::new(HashMap::new()),
            },
            faults: Faults::default(),
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Unix seconds now.
    pub fn now_secs(&self) -> u64 {
        self.clock.now_ms() / 1000
    }

    /// Waits for `d` on this node's clock.
    pub fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.clock
            .sleep_until(self.now_ms().saturating_add(d.as_millis() as u64))
    }

    /// Runs `f` with the node's cryptographic random source.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut dyn rand::CryptoRng) -> T) -> T {
        match &self.random {
            Random::System => f(&mut rand::rng()),
            Random::Seeded { main, .. } => f(&mut *main.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }

    /// Runs `f` with the random source kept for `purpose` (the operating system's in
    /// production; in a seeded run, a stream of the seed of its own).
    pub fn with_rng_for<T>(
        &self,
        purpose: &'static str,
        f: impl FnOnce(&mut dyn rand::CryptoRng) -> T,
    ) -> T {
        match &self.random {
            Random::System => f(&mut rand::rng()),
            Random::Seeded { seed, purposes, .. } => {
                let mut all = purposes.lock().unwrap_or_else(|p| p.into_inner());
                let rng = all
                    .entry(purpose)
                    .or_insert_with(|| purpose_stream(*seed, purpose));
                f(rng)
            }
        }
    }

    /// `N` random bytes from the source kept for `purpose`.
    pub fn random_bytes_for<const N: usize>(&self, purpose: &'static str) -> [u8; N] {
        let mut out = [0u8; N];
        self.with_rng_for(purpose, |r| r.fill_bytes(&mut out));
        out
    }

    /// A number below `n` (0 when `n` is 0) from the source kept for `purpose`.
    pub fn random_below_for(&self, purpose: &'static str, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.with_rng_for(purpose, |r| r.next_u64() % n)
    }

    /// A number below `n` (0 when `n` is 0) for `purpose` at `key`, a time on the node's clock:
    /// in a seeded run it depends only on the seed, the purpose and the time since the source
    /// was made, not on how many numbers the purpose gave before. A poll that a notification
    /// made come early draws its jitter for its own moment, and the polls after it fall where
    /// they would have.
    pub fn random_below_at(&self, purpose: &'static str, key: u64, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        match &self.random {
            Random::System => self.with_rng(|r| r.next_u64() % n),
            Random::Seeded { seed, origin, .. } => {
                let key = key.wrapping_sub(*origin);
                let mut r = purpose_stream(*seed, purpose);
                // Each key its own block of the purpose's stream.
                r.set_word_pos(u128::from(key) << 4);
                rand::Rng::next_u64(&mut r) % n
            }
        }
    }

    /// `N` random bytes.
    pub fn random_bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        self.with_rng(|r| r.fill_bytes(&mut out));
        out
    }
}

/// The seed's ChaCha stream for `purpose`: the purpose's name picks the stream (FNV-1a of its
/// bytes).
fn purpose_stream(seed: u64, purpose: &str) -> ChaCha20Rng {
    let stream = purpose.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Whether the process's nodes run on one thread: file work where it is awaited instead of on
/// tokio's blocking threads, and no outbox watchers.
static ONE_THREAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, for the whole process, [`file_work`] runs its work on the task that awaits
/// it rather than on a blocking thread, and nodes do not watch their outboxes (whoever drops
/// a file says so). The lab sets it: with every node on one thread and no other thread
/// deciding which work ends first, a run follows the same course every time (the same seed,
/// the same report). A node serving an office never sets it.
pub fn run_on_one_thread() {
    ONE_THREAD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// File work that stopped with a panic.
#[derive(Debug, thiserror::Error)]
#[error("file work stopped: {0}")]
pub struct FileWorkFailed(String);

impl From<FileWorkFailed> for std::io::Error {
    fn from(e: FileWorkFailed) -> std::io::Error {
        std::io::Error::other(e)
    }
}

/// Runs blocking file work (reading, writing, syncing) off the async tasks: on tokio's
/// blocking threads, or — in the lab, see [`run_on_one_thread`] — right here.
pub async fn file_work<T, F>(f: F) -> Result<T, FileWorkFailed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if on_one_thread() {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
            FileWorkFailed(
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into()),
            )
        });
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FileWorkFailed(e.to_string()))
}

/// A file whose every read, write and sync is [`file_work`]: on a blocking thread, or in the
/// lab on the runtime's one thread. (A `tokio::fs::File` always runs its work on tokio's
/// blocking threads, which in the lab would decide by their speed which of two streams'
/// files is written first.)
#[derive(Debug)]
pub struct WorkFile {
    file: Option<std::fs::File>,
}

impl WorkFile {
    /// Opens `path` to read.
    pub async fn open(path: std::path::PathBuf) -> std::io::Result<WorkFile> {
        let file = file_work(move || std::fs::File::open(path)).await??;
        Ok(WorkFile { file: Some(file) })
    }

    /// Creates `path` (or empties it) to write, readable by the owner only.
    pub async fn create_private(path: std::path::PathBuf) -> std::io::Result<WorkFile> {
        let file = file_work(move || {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            o.open(path)
        })
        .await??;
        Ok(WorkFile { file: Some(file) })
    }

    /// Runs `op` on the file as file work.
    async fn with<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut std::fs::File) -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("the file was lost with earlier file work"))?;
        let (file, out) = file_work(move || {
            let out = op(&mut file);
            (file, out)
        })
        .await?;
        self.file = Some(file);
        Ok(out)
    }

    /// Reads into `buf`; gives it back with how many bytes came (0 at the end).
    pub async fn read(&mut self, mut buf: Vec<u8>) -> std::io::Result<(Vec<u8>, usize)> {
        self.with(move |f| {
            loop {
                match std::io::Read::read(f, &mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r.map(|n| (buf, n)),
                }
            }
        })
        .await?
    }

    /// Writes all of `data`; gives it back.
    pub async fn write_all(&mut self, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
        self.with(move |f| std::io::Write::write_all(f, &data).map(|()| data))
            .await?
    }

    /// Makes what was written durable.
    pub async fn sync_all(&mut self) -> std::io::Result<()> {
        self.with(|f| f.sync_all()).await?
    }
}

/// Starts blocking file work now, to be awaited later: on a blocking thread, or — in the lab —
/// as a task of its own on the runtime's thread.
pub fn spawn_file_work<T, F>(f: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if on_one_thread() {
        tokio::spawn(async move { f() })
    } else {
        tokio::task::spawn_blocking(f)
    }
}

/// Whether the nodes run on one thread (the lab; see [`run_on_one_thread`]).
pub fn on_one_thread() -> bool {
    ONE_THREAD.load(std::sync::atomic::Ordering::Relaxed)
}

/// How old a file is by the operating system's clock (file times are the OS's, whatever clock
/// the node runs on); `None` when its time is in the future.
pub fn file_age(modified: std::time::SystemTime) -> Option<Duration> {
    std::time::SystemTime::now().duration_since(modified).ok()
}

/// Unix milliseconds by the system clock, for commands that run without a node (`renkei
/// status`, `receipts`, `directory verify`, and setting up keys and regions).
pub fn wall_clock_ms() -> u64 {
    system_now_ms()
}

/// Unix milliseconds as Japan Standard Time, for people reading receipts at an audit.
pub fn jst(ms: u64) -> String {
    let secs = ms / 1000 + 9 * 3600;
    let (days, rest) = ((secs / 86400) as i64, secs % 86400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} JST",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purpose_draws_the_same_numbers_whatever_else_was_drawn_first() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let a = Env::seeded(clock.clone(), 7);
        let b = Env::seeded(clock.clone(), 7);
        // `b` draws for other purposes, and from its main stream, before the message ids.
        let _ = b.random_bytes::<32>();
        let _ = b.random_below_for("mailbox looks", 1000);
        let ids_a: Vec<[u8; 16]> = (0..3).map(|_| a.random_bytes_for("message ids")).collect();
        let ids_b: Vec<[u8; 16]> = (0..3).map(|_| b.random_bytes_for("message ids")).collect();
        assert_eq!(ids_a, ids_b);
        // Purposes are streams of their own, and another seed gives other numbers.
        assert_ne!(a.random_bytes_for::<16>("mailbox looks"), ids_a[0]);
        let c = Env::seeded(clock, 8);
        assert_ne!(c.random_bytes_for::<16>("message ids"), ids_a[0]);
    }

    #[test]
    fn a_draw_at_a_key_does_not_depend_on_how_many_came_before() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let a = Env::seeded(clock.clone(), 7);
        let b = Env::seeded(clock.clone(), 7);
        // `b` drew for the same purpose at other moments (an extra, early look) first.
        for k in 0..5 {
            let _ = b.random_below_at("mailbox looks", 1_000 + k, 60_000);
            let _ = b.random_below_for("mailbox looks", 60_000);
        }
        let at = |e: &Env, k: u64| e.random_below_at("mailbox looks", k, 60_000);
        let keys = [0, 1, 300_000, 1_796_000_000_000];
        let xs: Vec<u64> = keys.iter().map(|&k| at(&a, k)).collect();
        assert_eq!(xs, keys.iter().map(|&k| at(&b, k)).collect::<Vec<_>>());
        assert!(xs.iter().all(|&x| x < 60_000));
        // Spread over keys, purposes and seeds (a chance of 1 in 60,000 each to collide).
        assert_ne!(xs[0], xs[1]);
        assert_ne!(xs[2], a.random_below_at("stream retries", 300_000, 60_000));
        let c = Env::seeded(clock, 8);
        assert_ne!(xs[2], at(&c, 300_000));
        assert_eq!(a.random_below_at("mailbox looks", 5, 0), 0);
        // A node started a minute later draws, a given time after its start, what this one
        // drew that long after its own.
        let later = Env::seeded(Arc::new(ManualClock::new(60_000)), 7);
        let since: Vec<u64> = keys.iter().map(|&k| at(&later, 60_000 + k)).collect();
        assert_eq!(since, xs);
    }

    #[test]
    fn receipt_times_read_in_japan_standard_time() {
        assert_eq!(jst(0), "1970-01-01 09:00:00 JST");
        assert_eq!(jst(1_709_132_400_000), "2024-02-29 00:00:00 JST");
        assert_eq!(jst(1_795_659_067_451), "2026-11-26 11:11:07 JST");
        assert_eq!(jst(1_798_729_199_000), "2026-12-31 23:59:59 JST");
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_moved() {
        let clock = ManualClock::new(1000);
        let woke = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = woke.clone();
        let sleeper = clock.sleep_until(1500);
        let t = tokio::spawn(async move {
            sleeper.await;
            w.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(499));
        tokio::task::yield_now().await;
        assert!(!woke.load(std::sync::atomic::Ordering::SeqCst));
        clock.advance(Duration::from_millis(1));
        t.await.unwrap();
        assert!(woke.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(clock.now_ms(), 1500);
    }

    #[tokio::test]
    async fn a_manual_clock_wakes_its_sleepers_by_deadline_then_by_when_they_began_to_wait() {
        let clock = ManualClock::new(0);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Forty sleepers over four deadlines, each begun in turn (a task waits once spawned
        // and run, and the runtime of a #[tokio::test] runs them in order).
        for i in 0..40u64 {
            let sleep = clock.sleep_until(10 + (i * 7) % 4);
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                sleep.await;
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        // One that stops waiting leaves nothing behind.
        let gone = clock.sleep_until(11);
        let mut gone = Box::pin(gone);
        assert!(futures::poll!(gone.as_mut()).is_pending());
        drop(gone);
        assert_eq!(clock.lock().waiting.len(), 40);
        clock.advance(Duration::from_millis(100));
        for t in tasks {
            t.await.unwrap();
        }
        let mut want: Vec<u64> = (0..40).collect();
        want.sort_by_key(|i| ((i * 7) % 4, *i));
        assert_eq!(*order.lock().unwrap(), want);
        assert!(clock.lock().waiting.is_empty());
    }

    #[tokio::test]
    async fn a_work_file_writes_reads_and_syncs_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = WorkFile::create_private(path.clone()).await.unwrap();
        let back = w.write_all(b"renkei ".to_vec()).await.unwrap();
        assert_eq!(back, b"renkei ");
        w.write_all("連携".as_bytes().to_vec()).await.unwrap();
        w.sync_all().await.unwrap();
        drop(w);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut r = WorkFile::open(path.clone()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4];
        loop {
            let (b, n) = r.read(buf).await.unwrap();
            buf = b;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, "renkei 連携".as_bytes());
        assert_eq!(
            WorkFile::open(dir.path().join("none"))
                .await
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn an_offset_clock_reads_and_waits_shifted_from_its_base() {
        let base = ManualClock::new(10_000);
        let fast = OffsetClock::new(Arc::new(base.clone()), 900_000);
        let slow = OffsetClock::new(Arc::new(base.clone()), -20_000);
        assert_eq!(fast.now_ms(), 910_000);
        // Before 1970 reads as 0, never wraps.
        assert_eq!(slow.now_ms(), 0);
        let woke = fast.sleep_until(911_000);
        base.advance(Duration::from_millis(999));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), fast.sleep_until(911_000))
                .await
                .is_err()
        );
        base.advance(Duration::from_millis(1));
        woke.await;
        assert_eq!(fast.now_ms(), 911_000);
    }

    #[test]
    fn the_same_seed_draws_the_same_bytes() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0));
        let a = Env::seeded(clock.clone(), 7);
        let b = Env::seeded(clock.clone(), 7);
        let c = Env::seeded(clock, 8);
        let x: [u8; 16] = a.random_bytes();
        assert_eq!(x, b.random_bytes::<16>());
        assert_ne!(x, c.random_bytes::<16>());
    }

    #[test]
    fn a_fault_fires_once_on_its_hit() {
        let f = Faults::default();
        f.arm(FaultPoint::CrashBeforeAck, 1);
        assert!(f.crash_point(FaultPoint::CrashBeforeAck).is_ok());
        assert!(!f.has_crashed());
        assert_eq!(
            f.crash_point(FaultPoint::CrashBeforeAck),
            Err(Crashed(FaultPoint::CrashBeforeAck))
        );
        assert!(f.has_crashed());
        assert!(f.crash_point(FaultPoint::CrashBeforeAck).is_ok());
        assert!(!f.hit(FaultPoint::DropConnection));
        for p in FaultPoint::ALL {
            assert_eq!(FaultPoint::parse(p.name()), Some(p));
        }
    }
}
