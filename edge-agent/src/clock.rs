//! Clock trust: when the agent believes its wall clock, and the re-stamping of readings taken
//! before it did.
//!
//! A field box often has no real-time clock: after a power cut it starts in 1970 (or, with a
//! clock restored from disk, at a wrong but plausible time) until NTP answers. Every reading
//! therefore carries the box's boot id ([`boot_id`]: the kernel's, or random per agent
//! start), its time on the monotonic clock of that boot ([`MonoClock`]) and whether the
//! agent trusted its wall clock when it read the registers (`synced`, see
//! [`wire::clock`]).
//!
//! Trust ([`Trust`], `[clock] trust`): `ntp` trusts the wall clock once NTP has synchronised
//! it (the file `clock.synced_file` exists: systemd-timesyncd creates
//! `/run/systemd/timesync/synchronized`); `always` trusts it whenever it passes the floor;
//! `never` never trusts it. In every mode a wall clock before the agent's build date (the
//! floor) is never trusted.
//!
//! [`BootClock`] decides, stamps and re-stamps: a reading taken before the clock is trusted
//! waits in the disk queue for up to `clock.hold` ([`BootClock::may_send`]); when it is sent
//! ([`BootClock::prepare`]) and the clock is trusted by then, its `ts_ms` becomes
//! `trusted_now - (mono_now - mono_then)`. A boot whose clock became trusted leaves its offset
//! (wall time at monotonic zero) in `clock.json` in the data folder, so the readings of that
//! boot still queued after a reboot are re-stamped too. A reading of a boot that never
//! trusted its clock keeps its boot id and monotonic time and goes out `synced: false`, never
//! silently mis-dated; one of the current boot also carries `sent_mono_ms`, from which the
//! gateway places it against its own clock.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wire::{ClockStamp, Telemetry};

/// The build date of this agent, Unix ms (from `build.rs`): no trusted wall clock is older.
pub const BUILD_FLOOR_MS: i64 = parse_build_seconds(env!("EDGE_AGENT_BUILD_UNIX_S")) * 1_000;

const fn parse_build_seconds(text: &str) -> i64 {
    let bytes = text.as_bytes();
    let mut value: i64 = 0;
    let mut index = 0;
    while index < bytes.len() {
        let digit = bytes[index];
        assert!(
            digit.is_ascii_digit(),
            "EDGE_AGENT_BUILD_UNIX_S is not a number"
        );
        value = value * 10 + (digit - b'0') as i64;
        index += 1;
    }
    value
}

/// Largest disagreement between a reading's wall-minus-monotonic offset and the current one
/// for the reading still to count as stamped by a trusted clock (the clock was stepped
/// between the read and the stamp otherwise).
const STEP_TOLERANCE_MS: i64 = 1_000;

/// Boots whose offsets `clock.json` keeps.
pub const MAX_REMEMBERED_BOOTS: usize = 16;

/// Where the decision to trust the wall clock comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Trusted once NTP has synchronised it (`synced_file` exists) and past the floor.
    Ntp,
    /// Trusted whenever past the floor (a box with a real-time clock, or tests).
    #[default]
    Always,
    /// Never trusted: every reading goes out `synced: false` and the gateway places it.
    Never,
}

/// The `[clock]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// `ntp`, `always` (default) or `never`; in every mode a clock before the build date is
    /// not trusted.
    #[serde(default)]
    pub trust: Trust,
    /// With `trust = "ntp"`: the file whose existence says NTP synchronised the clock.
    #[serde(default = "default_synced_file")]
    pub synced_file: PathBuf,
    /// How long readings taken before the clock is trusted wait in the queue for it (then
    /// they go out `synced: false`); `0s` sends them at once.
    #[serde(default = "default_hold", with = "humantime_serde")]
    pub hold: Duration,
}

impl Default for ClockConfig {
    fn default() -> Self {
        Self {
            trust: Trust::default(),
            synced_file: default_synced_file(),
            hold: default_hold(),
        }
    }
}

fn default_synced_file() -> PathBuf {
    PathBuf::from("/run/systemd/timesync/synchronized")
}

fn default_hold() -> Duration {
    Duration::from_secs(120)
}

/// Longest `clock.hold` accepted.
pub const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

/// The box's boot id: the kernel's (`/proc/sys/kernel/random/boot_id`) when readable, with
/// `true`; otherwise a random one for this agent run, with `false`.
pub fn boot_id() -> (String, bool) {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let id = text.trim();
        if wire::clock::is_boot_id(id) {
            return (id.to_owned(), true);
        }
    }
    (random_id(), false)
}

/// 128 random bits as 32 hex digits (std's per-process random hash keys, no extra crate).
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::with_capacity(32);
    for salt in [0x5eed_u64, 0xc10c] {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        hasher.write_u32(std::process::id());
        id.push_str(&format!("{:016x}", hasher.finish()));
    }
    id
}

/// The monotonic clock of a boot, in ms: the kernel's `CLOCK_BOOTTIME` (time since the
/// kernel booted, suspend included) when the boot id is the kernel's, else the time since
/// this agent started.
#[derive(Debug, Clone, Copy)]
pub enum MonoClock {
    Kernel,
    Since(Instant),
}

impl MonoClock {
    /// The clock that goes with a boot id (`kernel`: the id is the kernel's).
    pub fn for_boot(kernel: bool) -> Self {
        if kernel && kernel_boottime_ms().is_some() {
            MonoClock::Kernel
        } else {
            MonoClock::Since(Instant::now())
        }
    }

    pub fn now_ms(&self) -> u64 {
        match self {
            MonoClock::Kernel => kernel_boottime_ms().unwrap_or(0),
            MonoClock::Since(start) => u64::try_from(start.elapsed().as_millis()).unwrap_or(0),
        }
    }
}

#[cfg(target_os = "linux")]
fn kernel_boottime_ms() -> Option<u64> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    let seconds = u64::try_from(now.tv_sec()).ok()?;
    let millis = u64::try_from(now.tv_nsec() / 1_000_000).ok()?;
    seconds.checked_mul(1_000)?.checked_add(millis)
}

#[cfg(not(target_os = "linux"))]
fn kernel_boottime_ms() -> Option<u64> {
    None
}

/// What [`BootClock`] reads: the wall clock, the monotonic clock and NTP's word. Tests give
/// their own.
pub trait Clocks: Send {
    /// Wall time, Unix ms.
    fn wall_ms(&self) -> i64;
    /// Monotonic time of the current boot, ms.
    fn mono_ms(&self) -> u64;
    /// Whether NTP says it synchronised the clock.
    fn ntp_synced(&self) -> bool;
}

/// The machine's clocks.
#[derive(Debug, Clone)]
pub struct SystemClocks {
    pub mono: MonoClock,
    pub synced_file: PathBuf,
}

impl Clocks for SystemClocks {
    fn wall_ms(&self) -> i64 {
        crate::agent::now_ms()
    }
    fn mono_ms(&self) -> u64 {
        self.mono.now_ms()
    }
    fn ntp_synced(&self) -> bool {
        self.synced_file.exists()
    }
}

/// Offsets (wall time at monotonic zero) of the boots whose clock became trusted, newest
/// last, as kept in `clock.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Anchors {
    boots: VecDeque<(String, i64)>,
}

impl Anchors {
    fn get(&self, boot_id: &str) -> Option<i64> {
        self.boots
            .iter()
            .find(|(id, _)| id == boot_id)
            .map(|(_, offset)| *offset)
    }

    fn insert(&mut self, boot_id: &str, offset_ms: i64) {
        self.boots.retain(|(id, _)| id != boot_id);
        self.boots.push_back((boot_id.to_owned(), offset_ms));
        while self.boots.len() > MAX_REMEMBERED_BOOTS {
            self.boots.pop_front();
        }
    }
}

/// What happened to a reading on its way out ([`BootClock::prepare`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Stamped by a trusted clock (or a reading without clock fields): sent as it was.
    Unchanged,
    /// `ts_ms` re-stamped from the monotonic offset of its trusted boot.
    Restamped,
    /// Its boot's clock is not trusted (yet): sent `synced: false`.
    Unsynced,
}

/// The agent's clock: boot id, trust, stamping and re-stamping.
pub struct BootClock<C: Clocks> {
    clocks: C,
    trust: Trust,
    hold_ms: u64,
    floor_ms: i64,
    boot_id: String,
    /// Monotonic time when this clock was made (the hold counts from there).
    started_mono: u64,
    trusted: bool,
    anchors: Anchors,
    /// `clock.json`; `None` keeps the offsets in memory only.
    path: Option<PathBuf>,
}

impl<C: Clocks> BootClock<C> {
    /// A clock for `boot_id`; the offsets of earlier boots are read from `path` (a missing or
    /// unreadable file is an empty one: those readings then go out unsynced).
    pub fn new(
        clocks: C,
        config: &ClockConfig,
        floor_ms: i64,
        boot_id: String,
        path: Option<PathBuf>,
    ) -> Self {
        let anchors = path
            .as_deref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice::<Anchors>(&bytes).ok())
            .unwrap_or_default();
        let started_mono = clocks.mono_ms();
        let mut clock = Self {
            clocks,
            trust: config.trust,
            hold_ms: u64::try_from(config.hold.as_millis()).unwrap_or(u64::MAX),
            floor_ms,
            boot_id,
            started_mono,
            trusted: false,
            anchors,
            path,
        };
        clock.refresh();
        clock
    }

    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// Whether the wall clock is trusted now (as of the last [`BootClock::refresh`]).
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Re-reads the trust source; when the clock becomes trusted for the first time in this
    /// boot, records the boot's offset (and writes `clock.json`). Returns whether it is
    /// trusted.
    pub fn refresh(&mut self) -> bool {
        let wall = self.clocks.wall_ms();
        let trusted = wall >= self.floor_ms
            && match self.trust {
                Trust::Always => true,
                Trust::Never => false,
                Trust::Ntp => self.clocks.ntp_synced(),
            };
        if trusted && !self.trusted {
            let mono = self.clocks.mono_ms();
            let offset = wall.saturating_sub(i64::try_from(mono).unwrap_or(i64::MAX));
            self.anchors.insert(&self.boot_id, offset);
            self.save();
            tracing::info!(boot_id = %self.boot_id, wall_ms = wall, mono_ms = mono, "the wall clock is trusted; readings taken before are re-stamped as they are sent");
        } else if !trusted && self.trusted {
            tracing::warn!(boot_id = %self.boot_id, wall_ms = wall, "the wall clock is no longer trusted; readings go out unsynced");
        }
        self.trusted = trusted;
        trusted
    }

    fn save(&self) {
        let Some(path) = &self.path else { return };
        let result = serde_json::to_vec(&self.anchors)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(path, &bytes));
        if let Err(error) = result {
            tracing::warn!(path = %path.display(), %error, "clock offsets could not be saved; readings of this boot still queued after a reboot would go out unsynced");
        }
    }

    /// The clock fields of a reading read at wall `ts_ms` and monotonic `mono_ms`: synced
    /// when the clock is trusted and was not stepped in between.
    pub fn stamp(&self, ts_ms: i64, mono_ms: u64) -> ClockStamp {
        let offset_then = ts_ms.saturating_sub(i64::try_from(mono_ms).unwrap_or(i64::MAX));
        let offset_now = self
            .clocks
            .wall_ms()
            .saturating_sub(i64::try_from(self.clocks.mono_ms()).unwrap_or(i64::MAX));
        let steady = offset_then.abs_diff(offset_now) <= STEP_TOLERANCE_MS.unsigned_abs();
        ClockStamp::new(self.boot_id.clone(), mono_ms, self.trusted && steady)
    }

    /// Whether queued readings may be sent: the clock is trusted, or it never will be
    /// (`never`), or the hold is over.
    pub fn may_send(&self) -> bool {
        self.trusted
            || self.trust == Trust::Never
            || self.clocks.mono_ms().saturating_sub(self.started_mono) >= self.hold_ms
    }

    /// A queued reading as it goes out now: re-stamped if its boot's clock is trusted (this
    /// boot: `wall_now - (mono_now - mono_then)`; an earlier boot: its recorded offset), else
    /// unsynced (with `sent_mono_ms` when it is of this boot). A payload that does not parse
    /// goes out unchanged (the gateway refuses and counts it).
    pub fn prepare(&self, payload: Vec<u8>) -> (Vec<u8>, Prepared) {
        // Fast path: a reading stamped by a trusted clock is sent as written.
        if !contains(&payload, br#""synced":false"#) {
            return (payload, Prepared::Unchanged);
        }
        let Ok(mut reading) = Telemetry::from_json(&payload) else {
            return (payload, Prepared::Unchanged);
        };
        let Ok(Some(mut stamp)) = reading.clock() else {
            return (payload, Prepared::Unchanged);
        };
        if stamp.synced {
            return (payload, Prepared::Unchanged);
        }
        let then = i64::try_from(stamp.mono_ms).unwrap_or(i64::MAX);
        let current = stamp.boot_id == self.boot_id;
        let restamped = if current && self.trusted {
            let now = i64::try_from(self.clocks.mono_ms()).unwrap_or(i64::MAX);
            Some(
                self.clocks
                    .wall_ms()
                    .saturating_sub(now.saturating_sub(then)),
            )
        } else {
            self.anchors
                .get(&stamp.boot_id)
                .map(|offset| offset.saturating_add(then))
        };
        let outcome = match restamped {
            Some(ts_ms) => {
                reading.ts_ms = ts_ms;
                stamp.synced = true;
                stamp.restamped = true;
                stamp.sent_mono_ms = None;
                Prepared::Restamped
            }
            None => {
                stamp.sent_mono_ms = current.then(|| self.clocks.mono_ms().max(stamp.mono_ms));
                Prepared::Unsynced
            }
        };
        reading.set_clock(&stamp);
        (reading.to_json(), outcome)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Writes `bytes` to `path` through a synced temporary file renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
    use std::sync::Arc;

    use wire::{DeviceId, DeviceKind, Values, SCHEMA_VERSION};

    use super::*;

    /// 2026-12-01T00:00:00Z.
    const TRUE_NOW: i64 = 1_796_083_200_000;
    const FLOOR: i64 = 1_790_000_000_000;

    /// Clocks a test moves by hand.
    #[derive(Clone, Default)]
    struct TestClocks {
        wall: Arc<AtomicI64>,
        mono: Arc<AtomicU64>,
        ntp: Arc<AtomicBool>,
    }

    impl TestClocks {
        fn advance(&self, ms: u64) {
            self.mono.fetch_add(ms, Ordering::SeqCst);
            self.wall.fetch_add(ms as i64, Ordering::SeqCst);
        }
        /// NTP steps the wall clock to `wall` and says so.
        fn ntp_step(&self, wall: i64) {
            self.wall.store(wall, Ordering::SeqCst);
            self.ntp.store(true, Ordering::SeqCst);
        }
        fn wall(&self) -> i64 {
            self.wall.load(Ordering::SeqCst)
        }
        fn mono(&self) -> u64 {
            self.mono.load(Ordering::SeqCst)
        }
    }

    impl Clocks for TestClocks {
        fn wall_ms(&self) -> i64 {
            self.wall()
        }
        fn mono_ms(&self) -> u64 {
            self.mono()
        }
        fn ntp_synced(&self) -> bool {
            self.ntp.load(Ordering::SeqCst)
        }
    }

    fn config(trust: Trust, hold: Duration) -> ClockConfig {
        ClockConfig {
            trust,
            hold,
            ..ClockConfig::default()
        }
    }

    /// A reading read now, as the uplink queues it.
    fn read<C: Clocks>(clock: &BootClock<C>, clocks: &TestClocks, seq: u64) -> Vec<u8> {
        let mut reading = Telemetry {
            v: SCHEMA_VERSION,
            device_id: DeviceId::parse("yq-0001-hp").expect("id"),
            ts_ms: clocks.wall(),
            seq,
            profile: "aurora-ashp".into(),
            kind: DeviceKind::HeatPump,
            values: Values::from([(wire::values::INDOOR_TEMP_C, 19.5)]),
            fault: None,
            extra: BTreeMap::new(),
        };
        reading.set_clock(&clock.stamp(clocks.wall(), clocks.mono()));
        reading.to_json()
    }

    fn parse(bytes: &[u8]) -> (i64, ClockStamp) {
        let reading = Telemetry::from_json(bytes).expect("parses");
        let stamp = reading.clock().expect("valid").expect("stamped");
        (reading.ts_ms, stamp)
    }

    #[test]
    fn readings_before_ntp_are_held_then_restamped_from_the_monotonic_offset() {
        let clocks = TestClocks::default();
        // Power cut: the box starts in 1970, 40 s after the kernel booted.
        clocks.wall.store(40_000, Ordering::SeqCst);
        clocks.mono.store(40_000, Ordering::SeqCst);
        let mut clock = BootClock::new(
            clocks.clone(),
            &config(Trust::Ntp, Duration::from_secs(120)),
            FLOOR,
            "boot-aaaa-0001".into(),
            None,
        );
        assert!(!clock.trusted());
        let first = read(&clock, &clocks, 1);
        clocks.advance(10_000);
        let second = read(&clock, &clocks, 2);
        assert!(!parse(&first).1.synced && parse(&first).0 == 40_000);
        assert!(!clock.may_send(), "held while the clock is untrusted");
        // Untrusted and still within the hold: the readings would go out unsynced if sent.
        let (_, outcome) = clock.prepare(first.clone());
        assert_eq!(outcome, Prepared::Unsynced);

        // 30 s later NTP answers: the true time is TRUE_NOW.
        clocks.advance(30_000);
        clocks.ntp_step(TRUE_NOW);
        assert!(clock.refresh());
        assert!(clock.may_send());
        clocks.advance(5_000);
        let (bytes, outcome) = clock.prepare(first);
        assert_eq!(outcome, Prepared::Restamped);
        let (ts, stamp) = parse(&bytes);
        // Read 40 s (10 + 30) before NTP answered.
        assert_eq!(ts, TRUE_NOW - 40_000);
        assert!(stamp.synced && stamp.restamped && stamp.sent_mono_ms.is_none());
        assert_eq!(stamp.mono_ms, 40_000, "the monotonic time is kept");
        let (ts, _) = parse(&clock.prepare(second).0);
        assert_eq!(ts, TRUE_NOW - 30_000);
        // A reading taken now is synced at once and sent unchanged.
        let live = read(&clock, &clocks, 3);
        assert!(parse(&live).1.synced);
        assert_eq!(clock.prepare(live.clone()), (live, Prepared::Unchanged));
    }

    #[test]
    fn after_the_hold_untrusted_readings_go_out_unsynced_with_their_send_time() {
        let clocks = TestClocks::default();
        clocks.wall.store(5_000, Ordering::SeqCst);
        clocks.mono.store(5_000, Ordering::SeqCst);
        let clock = BootClock::new(
            clocks.clone(),
            &config(Trust::Ntp, Duration::from_secs(60)),
            FLOOR,
            "boot-aaaa-0002".into(),
            None,
        );
        let reading = read(&clock, &clocks, 1);
        clocks.advance(59_999);
        assert!(!clock.may_send());
        clocks.advance(1);
        assert!(clock.may_send());
        let (bytes, outcome) = clock.prepare(reading);
        assert_eq!(outcome, Prepared::Unsynced);
        let (ts, stamp) = parse(&bytes);
        assert_eq!(ts, 5_000, "the untrusted wall time is not touched");
        assert!(!stamp.synced);
        assert_eq!((stamp.mono_ms, stamp.sent_mono_ms), (5_000, Some(65_000)));
    }

    #[test]
    fn a_reboot_before_trust_keeps_the_old_boot_unsynced_and_a_trusted_boot_is_remembered() {
        let dir = std::env::temp_dir().join(format!("clock-test-{}", random_id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("clock.json");
        let ntp = config(Trust::Ntp, Duration::ZERO);

        // Boot A: never trusted; one reading queued.
        let clocks = TestClocks::default();
        clocks.wall.store(1_000, Ordering::SeqCst);
        clocks.mono.store(1_000, Ordering::SeqCst);
        let boot_a = BootClock::new(
            clocks.clone(),
            &ntp,
            FLOOR,
            "boot-aaaa-000a".into(),
            Some(path.clone()),
        );
        let from_a = read(&boot_a, &clocks, 1);
        // Boot B: trusted 20 s in; one reading queued before that.
        let clocks = TestClocks::default();
        clocks.wall.store(2_000, Ordering::SeqCst);
        clocks.mono.store(2_000, Ordering::SeqCst);
        let mut boot_b = BootClock::new(
            clocks.clone(),
            &ntp,
            FLOOR,
            "boot-bbbb-000b".into(),
            Some(path.clone()),
        );
        let from_b = read(&boot_b, &clocks, 2);
        clocks.advance(20_000);
        clocks.ntp_step(TRUE_NOW);
        assert!(boot_b.refresh());
        // Boot C: the box rebooted before either reading was sent; NTP has not answered.
        let clocks = TestClocks::default();
        clocks.wall.store(3_000, Ordering::SeqCst);
        clocks.mono.store(3_000, Ordering::SeqCst);
        let boot_c = BootClock::new(
            clocks.clone(),
            &ntp,
            FLOOR,
            "boot-cccc-000c".into(),
            Some(path.clone()),
        );
        assert!(!boot_c.trusted());

        // A's reading keeps its boot id and monotonic time and says it is unsynced; no
        // send time (its boot's monotonic clock is gone).
        let (bytes, outcome) = boot_c.prepare(from_a);
        assert_eq!(outcome, Prepared::Unsynced);
        let (ts, stamp) = parse(&bytes);
        assert_eq!(ts, 1_000);
        assert_eq!(
            stamp,
            ClockStamp::new("boot-aaaa-000a", 1_000, false),
            "never silently mis-dated"
        );
        // B's reading is re-stamped from B's recorded offset: read 20 s before B's trust.
        let (bytes, outcome) = boot_c.prepare(from_b);
        assert_eq!(outcome, Prepared::Restamped);
        let (ts, stamp) = parse(&bytes);
        assert_eq!(ts, TRUE_NOW - 20_000);
        assert!(stamp.synced && stamp.restamped);
        assert_eq!(stamp.boot_id, "boot-bbbb-000b");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_clock_before_the_build_date_is_never_trusted_and_never_means_never() {
        let clocks = TestClocks::default();
        clocks.wall.store(FLOOR - 1, Ordering::SeqCst);
        clocks.ntp.store(true, Ordering::SeqCst);
        for trust in [Trust::Always, Trust::Ntp] {
            let mut clock = BootClock::new(
                clocks.clone(),
                &config(trust, Duration::ZERO),
                FLOOR,
                "boot-dddd-0001".into(),
                None,
            );
            assert!(!clock.trusted(), "{trust:?} below the floor");
            clocks.wall.store(FLOOR, Ordering::SeqCst);
            assert!(clock.refresh(), "{trust:?} at the floor");
            clocks.wall.store(FLOOR - 1, Ordering::SeqCst);
        }
        clocks.wall.store(TRUE_NOW, Ordering::SeqCst);
        let clock = BootClock::new(
            clocks.clone(),
            &config(Trust::Never, Duration::from_secs(3600)),
            FLOOR,
            "boot-dddd-0002".into(),
            None,
        );
        assert!(!clock.trusted());
        assert!(clock.may_send(), "nothing to wait for");
        // Ntp without NTP's word.
        clocks.ntp.store(false, Ordering::SeqCst);
        let clock = BootClock::new(
            clocks,
            &config(Trust::Ntp, Duration::ZERO),
            FLOOR,
            "boot-dddd-0003".into(),
            None,
        );
        assert!(!clock.trusted());
    }

    #[test]
    fn a_step_between_the_read_and_the_stamp_is_not_synced() {
        let clocks = TestClocks::default();
        clocks.wall.store(TRUE_NOW, Ordering::SeqCst);
        clocks.mono.store(10_000, Ordering::SeqCst);
        let clock = BootClock::new(
            clocks.clone(),
            &config(Trust::Always, Duration::ZERO),
            FLOOR,
            "boot-eeee-0001".into(),
            None,
        );
        // Read an hour off, then the clock was corrected.
        let stamp = clock.stamp(TRUE_NOW - 3_600_000, 10_000);
        assert!(!stamp.synced);
        assert!(clock.stamp(TRUE_NOW - 500, 9_500).synced);
    }

    #[test]
    fn boot_ids_are_valid_on_the_wire_and_random_ones_differ() {
        let (id, _) = boot_id();
        assert!(wire::clock::is_boot_id(&id), "{id}");
        let (a, b) = (random_id(), random_id());
        assert_ne!(a, b);
        assert!(wire::clock::is_boot_id(&a));
        let mono = MonoClock::for_boot(true);
        assert!(mono.now_ms() <= mono.now_ms());
        const { assert!(BUILD_FLOOR_MS > 1_577_836_800_000) };
    }
}
