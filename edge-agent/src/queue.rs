//! Store-and-forward: a crash-safe, bounded, on-disk queue of readings between the pollers and
//! MQTT. Every reading is appended here before it is sent and leaves only after the broker's
//! PUBACK.
//!
//! On disk (`dir/`):
//! - `{first_id:020}.seg` segment files: an 8-byte magic, then records
//!   `len u32 LE | crc32c(body) u32 LE | body`, body = `id u64 | ts_ms i64 | seq u64 | flags u8 |
//!   device_len u8 | device | payload`. Ids grow by one per record across segments.
//!   `{first_id:020}.thin.seg` is a segment that was thinned at the size cap (never thinned twice).
//! - `state.json`: `next_id`, `acked_through` (every id at or below it was acknowledged) and the
//!   last `seq` of every device; replaced atomically (write, fsync, rename) on every sync.
//!
//! Policies:
//! - **fsync**: the active segment and the state are fsynced at most every `fsync_interval`
//!   (default 1 s) and on clean shutdown. A record is offered for sending only once it is
//!   fsynced, so a reading the broker has seen is never lost or renumbered by a power cut; a
//!   `kill -9` loses nothing that `write` returned (the page cache survives the process).
//! - **recovery**: on open every segment is scanned; a record whose length or checksum does not
//!   hold (a torn write at power loss) ends its segment: the file is truncated there and the
//!   loss is counted (`torn`). Records at or below `acked_through` are not resent; records
//!   acknowledged in the last second before a crash may be sent again with their original `seq`
//!   (a recognisable duplicate, never a new reading).
//! - **size cap**: the newest half of `max_size` always stays at full resolution. Past
//!   `max_size`, the oldest closed segment that is not yet thinned (and lies outside that newest
//!   half) is rewritten keeping one reading per device per `thin_interval` plus every reading
//!   that carries a fault; when no such segment is left, the oldest segment is dropped whole.
//!   Both are counted (`thinned`, `dropped`), logged and reported in the health message.
//! - **sequence numbers**: `seq` is assigned here, +1 per reading per device, persisted in the
//!   state and recovered from the segments, so it never goes backwards across restarts. A device
//!   never seen starts at the current time in microseconds, so even a wiped queue keeps `seq`
//!   growing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"HQSEG001";
const HEADER: usize = 8;
/// Fixed part of a record body before the device id.
const BODY_FIXED: usize = 8 + 8 + 8 + 1 + 1;
/// Largest record accepted (a telemetry payload is well under 2 KiB).
pub const MAX_RECORD: usize = 1 << 20;
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
const FLAG_FAULT: u8 = 1;
const STATE_FILE: &str = "state.json";

/// Settings of a queue (from `[queue]` of the agent config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub thin_interval: Duration,
}

/// Why the queue failed; names the file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("record for device {device} is {size} bytes, more than the {MAX_RECORD} allowed")]
    TooLarge { device: String, size: usize },
    #[error("device id {0:?} is longer than 255 bytes")]
    DeviceId(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One stored reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: u64,
    pub ts_ms: i64,
    pub seq: u64,
    /// The reading carries an active fault (kept when thinning).
    pub fault: bool,
    pub device: String,
    pub payload: Vec<u8>,
}

impl Record {
    /// Bytes this record takes on disk.
    pub fn stored_len(&self) -> usize {
        HEADER + BODY_FIXED + self.device.len() + self.payload.len()
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), QueueError> {
        let device_len = u8::try_from(self.device.len())
            .map_err(|_| QueueError::DeviceId(self.device.clone()))?;
        let body_len = BODY_FIXED + self.device.len() + self.payload.len();
        if body_len > MAX_RECORD {
            return Err(QueueError::TooLarge {
                device: self.device.clone(),
                size: body_len,
            });
        }
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.ts_ms.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(if self.fault { FLAG_FAULT } else { 0 });
        out.push(device_len);
        out.extend_from_slice(self.device.as_bytes());
        out.extend_from_slice(&self.payload);
        let crc = CRC.checksum(&out[start + HEADER..]);
        out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    fn decode(body: &[u8]) -> Option<Record> {
        let u64_at = |at: usize| -> Option<u64> {
            body.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let id = u64_at(0)?;
        let ts_ms = u64_at(8)? as i64;
        let seq = u64_at(16)?;
        let flags = *body.get(24)?;
        let device_len = usize::from(*body.get(25)?);
        let device = std::str::from_utf8(body.get(BODY_FIXED..BODY_FIXED + device_len)?).ok()?;
        let payload = body.get(BODY_FIXED + device_len..)?;
        Some(Record {
            id,
            ts_ms,
            seq,
            fault: flags & FLAG_FAULT != 0,
            device: device.to_owned(),
            payload: payload.to_vec(),
        })
    }
}

/// What reading the next record of a file gave.
enum Next {
    Record(Record, u64),
    /// Clean end of file.
    End,
    /// A record that does not hold together (torn or corrupt) at this offset.
    Bad(String),
}

fn read_record(reader: &mut impl Read) -> Result<Next, std::io::Error> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        let n = reader.read(&mut header[filled..])?;
        if n == 0 {
            return Ok(if filled == 0 {
                Next::End
            } else {
                Next::Bad(format!("{filled}-byte partial record header"))
            });
        }
        filled += n;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(BODY_FIXED..=MAX_RECORD).contains(&len) {
        return Ok(Next::Bad(format!("implausible record length {len}")));
    }
    let mut body = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = reader.read(&mut body[filled..])?;
        if n == 0 {
            return Ok(Next::Bad(format!(
                "record cut after {filled} of {len} bytes"
            )));
        }
        filled += n;
    }
    if CRC.checksum(&body) != crc {
        return Ok(Next::Bad("checksum mismatch".into()));
    }
    match Record::decode(&body) {
        Some(record) => Ok(Next::Record(record, (HEADER + len) as u64)),
        None => Ok(Next::Bad("record body does not parse".into())),
    }
}

#[derive(Debug, Clone)]
struct Segment {
    first_id: u64,
    path: PathBuf,
    bytes: u64,
    /// Records present (acknowledged or not).
    records: u64,
    thinned: bool,
}

fn segment_path(dir: &Path, first_id: u64, thinned: bool) -> PathBuf {
    if thinned {
        dir.join(format!("{first_id:020}.thin.seg"))
    } else {
        dir.join(format!("{first_id:020}.seg"))
    }
}

/// Persisted delivery state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    next_id: u64,
    acked_through: u64,
    seqs: BTreeMap<String, u64>,
}

/// Counters of the queue's life, for health reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    /// Readings appended since start.
    pub appended: u64,
    /// Readings acknowledged by the broker since start.
    pub acked: u64,
    /// Readings removed by thinning at the size cap (since start).
    pub thinned: u64,
    /// Readings dropped whole at the size cap (since start).
    pub dropped: u64,
    /// Torn or corrupt records found and cut off when the queue was opened.
    pub torn: u64,
}

/// What opening found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    /// Readings waiting for acknowledgement.
    pub unacked: u64,
    /// Torn or corrupt records cut off.
    pub torn: u64,
}

/// A reading position in the segment files.
#[derive(Debug)]
struct Cursor {
    next_id: u64,
    /// First id this cursor must not return (exclusive); `u64::MAX` for the live lane.
    end_id: u64,
    reader: Option<(u64, BufReader<File>)>,
    /// A record read ahead (not yet durable or past `end_id`).
    pending: Option<Record>,
}

impl Cursor {
    fn new(next_id: u64, end_id: u64) -> Cursor {
        Cursor {
            next_id,
            end_id,
            reader: None,
            pending: None,
        }
    }

    fn exhausted(&self) -> bool {
        self.next_id >= self.end_id
    }
}

/// The queue. Not thread-safe: one task owns it.
#[derive(Debug)]
pub struct DiskQueue {
    settings: QueueSettings,
    segments: Vec<Segment>,
    writer: File,
    next_id: u64,
    /// Every id at or below this is fsynced and may be sent.
    durable_through: u64,
    dirty: bool,
    state_dirty: bool,
    acked_through: u64,
    acked_above: BTreeSet<u64>,
    inflight: BTreeSet<u64>,
    backlog: Option<Cursor>,
    live: Option<Cursor>,
    seqs: BTreeMap<String, u64>,
    unacked: u64,
    stats: QueueStats,
    buffer: Vec<u8>,
}

impl DiskQueue {
    /// Opens (or creates) the queue in `settings.dir`, recovering from whatever a crash left:
    /// reads the state, finds the segment files, scans each (cutting torn records), and opens
    /// the segment to append to.
    pub fn open(settings: QueueSettings) -> Result<(DiskQueue, Recovery), QueueError> {
        let dir = settings.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let state = read_state(&dir)?;
        let found = find_segments(&dir)?;
        let Recovered {
            mut segments,
            seqs,
            last_id,
            mut recovery,
        } = recover_segments(found, &state)?;
        let next_id = state
            .next_id
            .max(last_id + 1)
            .max(state.acked_through + 1)
            .max(1);
        let writer = open_active(&dir, &mut segments, next_id, settings.segment_bytes)?;
        recovery.segments = segments.len();
        let stats = QueueStats {
            torn: recovery.torn,
            ..QueueStats::default()
        };
        let queue = DiskQueue {
            settings,
            segments,
            writer,
            next_id,
            durable_through: next_id - 1,
            dirty: false,
            state_dirty: true,
            acked_through: state.acked_through,
            acked_above: BTreeSet::new(),
            inflight: BTreeSet::new(),
            backlog: None,
            live: None,
            seqs,
            unacked: recovery.unacked,
            stats,
            buffer: Vec::with_capacity(4096),
        };
        Ok((queue, recovery))
    }

    /// The next sequence number of `device` (not yet taken).
    pub fn next_seq(&self, device: &str, now_ms: i64) -> u64 {
        match self.seqs.get(device) {
            Some(last) => last + 1,
            None => (now_ms.max(0) as u64).saturating_mul(1000),
        }
    }

    /// Appends a reading. `payload` receives the reading's `seq` and returns its bytes.
    /// Returns the record id and the seq. The record becomes sendable at the next [`sync`].
    ///
    /// [`sync`]: DiskQueue::sync
    pub fn append(
        &mut self,
        device: &str,
        ts_ms: i64,
        fault: bool,
        now_ms: i64,
        payload: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<(u64, u64), QueueError> {
        let seq = self.next_seq(device, now_ms);
        let record = Record {
            id: self.next_id,
            ts_ms,
            seq,
            fault,
            device: device.to_owned(),
            payload: payload(seq),
        };
        self.buffer.clear();
        record.encode(&mut self.buffer)?;
        if self
            .segments
            .last()
            .is_some_and(|s| s.bytes + self.buffer.len() as u64 > self.settings.segment_bytes)
        {
            self.roll()?;
        }
        let path = self.active_path();
        self.writer
            .write_all(&self.buffer)
            .map_err(io_error(&path))?;
        if let Some(active) = self.segments.last_mut() {
            active.bytes += self.buffer.len() as u64;
            active.records += 1;
        }
        self.seqs.insert(record.device, seq);
        self.next_id += 1;
        self.unacked += 1;
        self.stats.appended += 1;
        self.dirty = true;
        self.state_dirty = true;
        if self.total_bytes() > self.settings.max_bytes {
            self.enforce_cap()?;
        }
        Ok((record.id, seq))
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_else(|| self.settings.dir.clone())
    }

    /// Closes the active segment (fsynced) and starts a new one.
    fn roll(&mut self) -> Result<(), QueueError> {
        let path = self.active_path();
        self.writer.sync_all().map_err(io_error(&path))?;
        self.durable_through = self.next_id - 1;
        let segment = create_segment(&self.settings.dir, self.next_id)?;
        self.writer = OpenOptions::new()
            .append(true)
            .open(&segment.path)
            .map_err(io_error(&segment.path))?;
        self.segments.push(segment);
        sync_dir(&self.settings.dir)
    }

    /// Bytes the queue's segments take on disk.
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Readings waiting for acknowledgement.
    pub fn depth(&self) -> u64 {
        self.unacked
    }

    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    /// Segment files on disk (for tests and health).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// True when readings were appended since the last [`DiskQueue::sync`].
    pub fn is_dirty(&self) -> bool {
        self.dirty || self.state_dirty
    }

    /// Makes everything appended durable: fsyncs the active segment, persists the state
    /// (atomically) and deletes segments whose readings were all acknowledged.
    pub fn sync(&mut self) -> Result<(), QueueError> {
        if self.dirty {
            let path = self.active_path();
            self.writer.sync_data().map_err(io_error(&path))?;
            self.durable_through = self.next_id - 1;
            self.dirty = false;
        }
        if self.state_dirty {
            let state = State {
                next_id: self.next_id,
                acked_through: self.acked_through,
                seqs: self.seqs.clone(),
            };
            let path = self.settings.dir.join(STATE_FILE);
            let tmp = self.settings.dir.join("state.json.tmp");
            let bytes = serde_json::to_vec(&state).unwrap_or_default();
            let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
            file.write_all(&bytes).map_err(io_error(&tmp))?;
            file.sync_all().map_err(io_error(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_error(&path))?;
            self.state_dirty = false;
            // Only now that `acked_through` is durable may acknowledged segments go.
            while self.segments.len() > 1
                && self.segments.get(1).map(|s| s.first_id.saturating_sub(1))
                    <= Some(self.acked_through)
            {
                let segment = self.segments.remove(0);
                std::fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
            }
            sync_dir(&self.settings.dir)?;
        }
        Ok(())
    }

    /// Starts a delivery session (on every MQTT CONNACK): forgets what was in flight, replays
    /// the backlog from the oldest unacknowledged reading, and sends readings appended from now
    /// on ahead of the backlog.
    pub fn start_session(&mut self) {
        self.inflight.clear();
        self.backlog = Some(Cursor::new(self.acked_through + 1, self.next_id));
        self.live = Some(Cursor::new(self.next_id, u64::MAX));
    }

    /// Ends the delivery session (connection lost): nothing more is handed out until the next
    /// [`DiskQueue::start_session`].
    pub fn end_session(&mut self) {
        self.backlog = None;
        self.live = None;
        self.inflight.clear();
    }

    /// Readings handed out and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// The next durable reading to send: new readings first, then the backlog in order.
    /// Returns `None` when there is nothing sendable (or no session).
    pub fn next_to_send(&mut self) -> Result<Option<Record>, QueueError> {
        let limit = self.durable_through + 1;
        let mut record = None;
        if let Some(mut live) = self.live.take() {
            record = self.advance(&mut live, limit)?;
            self.live = Some(live);
        }
        if record.is_none() {
            if let Some(mut backlog) = self.backlog.take() {
                record = self.advance(&mut backlog, limit)?;
                self.backlog = Some(backlog);
            }
        }
        if let Some(record) = &record {
            self.inflight.insert(record.id);
        }
        Ok(record)
    }

    /// Reads the next record of `cursor` below `limit` that is not yet acknowledged.
    fn advance(&self, cursor: &mut Cursor, limit: u64) -> Result<Option<Record>, QueueError> {
        let end = cursor.end_id.min(limit);
        loop {
            if cursor.next_id >= end {
                return Ok(None);
            }
            let record = match cursor.pending.take() {
                Some(record) => Some(record),
                None => self.read_next(cursor)?,
            };
            let Some(record) = record else {
                return Ok(None);
            };
            if record.id < cursor.next_id
                || record.id <= self.acked_through
                || self.acked_above.contains(&record.id)
            {
                cursor.next_id = cursor.next_id.max(record.id + 1);
                continue;
            }
            if record.id >= end {
                cursor.next_id = record.id;
                cursor.pending = Some(record);
                return Ok(None);
            }
            cursor.next_id = record.id + 1;
            return Ok(Some(record));
        }
    }

    /// The next record in file order at or after the cursor, opening segments as needed.
    fn read_next(&self, cursor: &mut Cursor) -> Result<Option<Record>, QueueError> {
        loop {
            if cursor.reader.is_none() {
                let Some(segment) = self
                    .segments
                    .iter()
                    .rev()
                    .find(|s| s.first_id <= cursor.next_id)
                    .or_else(|| self.segments.first())
                else {
                    return Ok(None);
                };
                let mut file = File::open(&segment.path).map_err(io_error(&segment.path))?;
                file.seek(SeekFrom::Start(MAGIC.len() as u64))
                    .map_err(io_error(&segment.path))?;
                cursor.reader = Some((segment.first_id, BufReader::new(file)));
            }
            let Some((first_id, reader)) = cursor.reader.as_mut() else {
                return Ok(None);
            };
            let first_id = *first_id;
            let next = read_record(reader).map_err(io_error(&self.settings.dir))?;
            match next {
                Next::Record(record, _) => return Ok(Some(record)),
                Next::End | Next::Bad(_) => {
                    // Move on to the following segment, if there is one; else wait for more.
                    match self.segments.iter().find(|s| s.first_id > first_id) {
                        Some(next) => {
                            cursor.next_id = cursor.next_id.max(next.first_id);
                            cursor.reader = None;
                        }
                        None => {
                            if let Next::Bad(_) = next {
                                // A partial record at the live end cannot happen in one
                                // process; reopen at the cursor to recover if it ever does.
                                cursor.reader = None;
                            }
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// The broker acknowledged reading `id`.
    pub fn ack(&mut self, id: u64) {
        if !self.inflight.remove(&id) {
            return;
        }
        if id > self.acked_through && self.acked_above.insert(id) {
            self.unacked = self.unacked.saturating_sub(1);
            self.stats.acked += 1;
        }
        let mut floor = self.inflight.first().copied().unwrap_or(u64::MAX);
        if let Some(backlog) = &self.backlog {
            if !backlog.exhausted() {
                floor = floor.min(backlog.next_id);
            }
        }
        if let Some(live) = &self.live {
            floor = floor.min(live.next_id);
        }
        let through = floor.saturating_sub(1).min(self.next_id - 1);
        if through > self.acked_through {
            self.acked_through = through;
            self.acked_above = self.acked_above.split_off(&(through + 1));
            self.state_dirty = true;
        }
    }

    /// Every id at or below this was acknowledged.
    pub fn acked_through(&self) -> u64 {
        self.acked_through
    }

    /// Event time of the oldest unacknowledged reading.
    pub fn oldest_unacked_ts(&self) -> Result<Option<i64>, QueueError> {
        if self.unacked == 0 {
            return Ok(None);
        }
        let mut cursor = Cursor::new(self.acked_through + 1, self.next_id);
        Ok(self
            .advance(&mut cursor, self.next_id)?
            .map(|record| record.ts_ms))
    }

    /// Brings the queue back under `max_bytes`: thins the oldest unthinned closed segment outside
    /// the newest half, or, when there is none, drops the oldest segment.
    fn enforce_cap(&mut self) -> Result<(), QueueError> {
        while self.total_bytes() > self.settings.max_bytes && self.segments.len() > 1 {
            // The newest half of the cap stays at full resolution.
            let closed = self.segments.len() - 1;
            let half = self.settings.max_bytes / 2;
            let candidate = self.segments[..closed]
                .iter()
                .position(|s| !s.thinned)
                .filter(|&i| {
                    let newer: u64 = self.segments[i + 1..].iter().map(|s| s.bytes).sum();
                    newer >= half
                });
            match candidate {
                Some(index) => self.thin(index)?,
                None => {
                    let segment = self.segments.remove(0);
                    let lost = self.count_unacked(&segment)?;
                    std::fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
                    self.unacked = self.unacked.saturating_sub(lost);
                    self.stats.dropped += lost;
                    tracing::warn!(
                        segment = %segment.path.display(),
                        readings = lost,
                        dropped_total = self.stats.dropped,
                        "queue is full: dropped the oldest (already thinned) readings"
                    );
                }
            }
        }
        Ok(())
    }

    fn count_unacked(&self, segment: &Segment) -> Result<u64, QueueError> {
        let mut file = File::open(&segment.path).map_err(io_error(&segment.path))?;
        file.seek(SeekFrom::Start(MAGIC.len() as u64))
            .map_err(io_error(&segment.path))?;
        let mut reader = BufReader::new(file);
        let mut count = 0;
        while let Next::Record(record, _) =
            read_record(&mut reader).map_err(io_error(&segment.path))?
        {
            if record.id > self.acked_through && !self.acked_above.contains(&record.id) {
                count += 1;
            }
        }
        Ok(count)
    }

    /// Rewrites segment `index` keeping one reading per device per `thin_interval` and every
    /// reading with a fault; acknowledged readings are left out.
    fn thin(&mut self, index: usize) -> Result<(), QueueError> {
        let Some(segment) = self.segments.get(index).cloned() else {
            return Ok(());
        };
        let bucket_ms = (self.settings.thin_interval.as_millis() as i64).max(1);
        let mut file = File::open(&segment.path).map_err(io_error(&segment.path))?;
        file.seek(SeekFrom::Start(MAGIC.len() as u64))
            .map_err(io_error(&segment.path))?;
        let mut reader = BufReader::new(file);
        let tmp = self
            .settings
            .dir
            .join(format!("{:020}.tmp", segment.first_id));
        let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(io_error(&tmp))?);
        out.write_all(MAGIC).map_err(io_error(&tmp))?;
        let mut kept_buckets: BTreeSet<(String, i64)> = BTreeSet::new();
        let (mut kept, mut removed, mut bytes) = (0u64, 0u64, MAGIC.len() as u64);
        let mut buffer = Vec::new();
        while let Next::Record(record, _) =
            read_record(&mut reader).map_err(io_error(&segment.path))?
        {
            let acked = record.id <= self.acked_through || self.acked_above.contains(&record.id);
            if acked {
                continue;
            }
            let bucket = (record.device.clone(), record.ts_ms.div_euclid(bucket_ms));
            if record.fault || kept_buckets.insert(bucket) {
                buffer.clear();
                record.encode(&mut buffer)?;
                out.write_all(&buffer).map_err(io_error(&tmp))?;
                bytes += buffer.len() as u64;
                kept += 1;
            } else {
                removed += 1;
            }
        }
        let file = out
            .into_inner()
            .map_err(|e| io_error(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_error(&tmp))?;
        let thinned_path = segment_path(&self.settings.dir, segment.first_id, true);
        std::fs::rename(&tmp, &thinned_path).map_err(io_error(&thinned_path))?;
        if thinned_path != segment.path {
            std::fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
        }
        sync_dir(&self.settings.dir)?;
        if let Some(slot) = self.segments.get_mut(index) {
            slot.path = thinned_path;
            slot.bytes = bytes;
            slot.records = kept;
            slot.thinned = true;
        }
        self.unacked = self.unacked.saturating_sub(removed);
        self.stats.thinned += removed;
        tracing::warn!(
            segment = segment.first_id,
            kept,
            removed,
            thinned_total = self.stats.thinned,
            interval = ?self.settings.thin_interval,
            "queue is full: thinned old readings to one per device per interval"
        );
        Ok(())
    }
}

/// The persisted delivery state of `dir`; a missing file is a new queue, an unreadable one
/// is logged and replaced (every stored reading is then sent again).
fn read_state(dir: &Path) -> Result<State, QueueError> {
    let state_path = dir.join(STATE_FILE);
    match std::fs::read(&state_path) {
        Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
            Ok(state) => Ok(state),
            Err(error) => {
                tracing::error!(path = %state_path.display(), %error, "queue state is unreadable; every stored reading will be sent again");
                Ok(State::default())
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(error) => Err(io_error(&state_path)(error)),
    }
}

/// The segment files of `dir` by first id, with whether each is thinned; a thinned copy wins
/// over an unthinned one of the same id (the loser is deleted), and leftover `.tmp` files are
/// deleted.
fn find_segments(dir: &Path) -> Result<BTreeMap<u64, (PathBuf, bool)>, QueueError> {
    let mut found: BTreeMap<u64, (PathBuf, bool)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let (stem, thinned) = if let Some(stem) = name.strip_suffix(".thin.seg") {
            (stem, true)
        } else if let Some(stem) = name.strip_suffix(".seg") {
            (stem, false)
        } else {
            continue;
        };
        let Ok(first_id) = stem.parse::<u64>() else {
            continue;
        };
        match found.get(&first_id) {
            Some((_, true)) if !thinned => {
                let _ = std::fs::remove_file(&path);
            }
            Some((other, false)) if thinned => {
                let _ = std::fs::remove_file(other);
                found.insert(first_id, (path, thinned));
            }
            _ => {
                found.insert(first_id, (path, thinned));
            }
        }
    }
    Ok(found)
}

/// What the scan of the segment files found.
struct Recovered {
    /// The segments that hold records, oldest first.
    segments: Vec<Segment>,
    /// The last `seq` of every device, from the state and the records.
    seqs: BTreeMap<String, u64>,
    /// The highest record id found (0: none).
    last_id: u64,
    recovery: Recovery,
}

/// Scans every segment found (cutting torn records, deleting empty segments) and gathers the
/// devices' sequence numbers and the counts of unacknowledged and torn records.
fn recover_segments(
    found: BTreeMap<u64, (PathBuf, bool)>,
    state: &State,
) -> Result<Recovered, QueueError> {
    let mut recovery = Recovery::default();
    let mut segments = Vec::with_capacity(found.len());
    let mut seqs = state.seqs.clone();
    let mut last_id = 0u64;
    for (first_id, (path, thinned)) in found {
        let scan = scan_segment(&path, state.acked_through, &mut seqs)?;
        recovery.torn += scan.torn;
        recovery.unacked += scan.unacked;
        last_id = last_id.max(scan.last_id);
        if scan.bytes <= MAGIC.len() as u64 && scan.records == 0 {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        segments.push(Segment {
            first_id,
            path,
            bytes: scan.bytes,
            records: scan.records,
            thinned,
        });
    }
    Ok(Recovered {
        segments,
        seqs,
        last_id,
        recovery,
    })
}

/// Opens the segment appends go to: the last one if it is unthinned and has room, else a new
/// one starting at `next_id` (added to `segments`); fsyncs it and the folder.
fn open_active(
    dir: &Path,
    segments: &mut Vec<Segment>,
    next_id: u64,
    segment_bytes: u64,
) -> Result<File, QueueError> {
    let reuse = segments
        .last()
        .is_some_and(|s| !s.thinned && s.bytes < segment_bytes);
    if !reuse {
        segments.push(create_segment(dir, next_id)?);
    }
    let active = segments
        .last()
        .map(|s| s.path.clone())
        .unwrap_or_else(|| segment_path(dir, next_id, false));
    let writer = OpenOptions::new()
        .append(true)
        .open(&active)
        .map_err(io_error(&active))?;
    writer.sync_all().map_err(io_error(&active))?;
    sync_dir(dir)?;
    Ok(writer)
}

struct Scan {
    bytes: u64,
    records: u64,
    unacked: u64,
    last_id: u64,
    torn: u64,
}

/// Reads a segment through; cuts it at the first record that does not hold together.
fn scan_segment(
    path: &Path,
    acked_through: u64,
    seqs: &mut BTreeMap<String, u64>,
) -> Result<Scan, QueueError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    let mut magic = [0u8; 8];
    let mut scan = Scan {
        bytes: 0,
        records: 0,
        unacked: 0,
        last_id: 0,
        torn: 0,
    };
    if file.read_exact(&mut magic).is_err() || &magic != MAGIC {
        tracing::error!(path = %path.display(), "queue segment has no valid header; it is discarded");
        drop(file);
        std::fs::remove_file(path).map_err(io_error(path))?;
        scan.torn = 1;
        return Ok(scan);
    }
    let mut offset = MAGIC.len() as u64;
    let mut reader = BufReader::new(&mut file);
    loop {
        match read_record(&mut reader).map_err(io_error(path))? {
            Next::Record(record, len) => {
                offset += len;
                scan.records += 1;
                scan.last_id = scan.last_id.max(record.id);
                if record.id > acked_through {
                    scan.unacked += 1;
                }
                let seq = seqs.entry(record.device).or_insert(record.seq);
                *seq = (*seq).max(record.seq);
            }
            Next::End => break,
            Next::Bad(reason) => {
                scan.torn += 1;
                tracing::warn!(path = %path.display(), offset, %reason, "torn or corrupt record in the queue; cutting the segment there");
                drop(reader);
                file.set_len(offset).map_err(io_error(path))?;
                file.sync_all().map_err(io_error(path))?;
                break;
            }
        }
    }
    scan.bytes = offset;
    Ok(scan)
}

fn create_segment(dir: &Path, first_id: u64) -> Result<Segment, QueueError> {
    let path = segment_path(dir, first_id, false);
    let mut file = File::create(&path).map_err(io_error(&path))?;
    file.write_all(MAGIC).map_err(io_error(&path))?;
    file.sync_all().map_err(io_error(&path))?;
    Ok(Segment {
        first_id,
        path,
        bytes: MAGIC.len() as u64,
        records: 0,
        thinned: false,
    })
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn settings(name: &str) -> QueueSettings {
        let dir =
            std::env::temp_dir().join(format!("edge-agent-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        QueueSettings {
            dir,
            max_bytes: 1 << 20,
            segment_bytes: 16 * 1024,
            thin_interval: Duration::from_secs(300),
        }
    }

    fn payload(seq: u64) -> Vec<u8> {
        format!("{{\"seq\":{seq},\"values\":{{\"indoor_temp_c\":20.5}}}}").into_bytes()
    }

    fn append(queue: &mut DiskQueue, device: &str, ts_ms: i64) -> (u64, u64) {
        queue
            .append(device, ts_ms, false, NOW, payload)
            .expect("append")
    }

    /// Sends everything sendable and acknowledges it; returns the records in send order.
    fn drain(queue: &mut DiskQueue) -> Vec<Record> {
        let mut sent = Vec::new();
        while let Some(record) = queue.next_to_send().expect("read") {
            sent.push(record);
        }
        for record in &sent {
            queue.ack(record.id);
        }
        sent
    }

    #[test]
    fn readings_are_sent_in_order_only_once_durable_and_leave_on_ack() {
        let (mut queue, recovery) = DiskQueue::open(settings("order")).expect("open");
        assert_eq!(recovery.unacked, 0);
        queue.start_session();
        for i in 0..10 {
            append(&mut queue, "d-1", NOW + i);
        }
        assert_eq!(queue.next_to_send().expect("read"), None, "not fsynced yet");
        queue.sync().expect("sync");
        let sent = drain(&mut queue);
        assert_eq!(sent.len(), 10);
        assert!(sent.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        assert_eq!(queue.depth(), 0);
        assert_eq!(queue.acked_through(), 10);
    }

    #[test]
    fn a_reconnect_resends_what_was_not_acknowledged_and_nothing_else() {
        let (mut queue, _) = DiskQueue::open(settings("resend")).expect("open");
        queue.start_session();
        for i in 0..6 {
            append(&mut queue, "d-1", NOW + i);
        }
        queue.sync().expect("sync");
        let first: Vec<Record> = (0..6)
            .filter_map(|_| queue.next_to_send().expect("read"))
            .collect();
        queue.ack(first[0].id);
        queue.ack(first[1].id);
        queue.ack(first[3].id); // out of order: 3 acknowledged, 2 not
        queue.end_session();
        queue.start_session();
        let again = drain(&mut queue);
        let ids: Vec<u64> = again.iter().map(|r| r.id).collect();
        assert_eq!(
            ids,
            vec![3, 5, 6],
            "only the unacknowledged readings, in order"
        );
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn new_readings_go_ahead_of_the_backlog_after_a_reconnect() {
        let (mut queue, _) = DiskQueue::open(settings("live")).expect("open");
        for i in 0..5 {
            append(&mut queue, "d-1", NOW + i);
        }
        queue.sync().expect("sync");
        queue.start_session();
        append(&mut queue, "d-1", NOW + 100);
        queue.sync().expect("sync");
        let ids: Vec<u64> = drain(&mut queue).iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![6, 1, 2, 3, 4, 5]);
        assert_eq!(queue.acked_through(), 6);
    }

    #[test]
    fn seq_and_unacknowledged_readings_survive_a_restart() {
        let settings = settings("restart");
        let last_seq;
        {
            let (mut queue, _) = DiskQueue::open(settings.clone()).expect("open");
            queue.start_session();
            for i in 0..20 {
                append(&mut queue, "d-1", NOW + i);
            }
            queue.sync().expect("sync");
            for _ in 0..8 {
                let record = queue.next_to_send().expect("read").expect("record");
                queue.ack(record.id);
            }
            queue.sync().expect("sync");
            last_seq = queue.next_seq("d-1", NOW) - 1;
        }
        let (mut queue, recovery) = DiskQueue::open(settings).expect("reopen");
        assert_eq!(recovery.unacked, 12);
        assert_eq!(queue.next_seq("d-1", NOW + 5_000_000), last_seq + 1);
        queue.start_session();
        let sent = drain(&mut queue);
        assert_eq!(sent.len(), 12);
        assert_eq!(sent.first().map(|r| r.id), Some(9));
        assert_eq!(sent.last().map(|r| r.seq), Some(last_seq));
    }

    #[test]
    fn a_torn_last_record_is_detected_cut_off_and_counted() {
        let settings = settings("torn");
        {
            let (mut queue, _) = DiskQueue::open(settings.clone()).expect("open");
            for i in 0..5 {
                append(&mut queue, "d-1", NOW + i);
            }
            queue.sync().expect("sync");
        }
        // Simulate a power cut in the middle of the last record.
        let segment = std::fs::read_dir(&settings.dir)
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .expect("segment");
        let len = std::fs::metadata(&segment).expect("meta").len();
        let file = OpenOptions::new().write(true).open(&segment).expect("open");
        file.set_len(len - 7).expect("truncate");
        drop(file);
        let (mut queue, recovery) = DiskQueue::open(settings.clone()).expect("reopen");
        assert_eq!((recovery.torn, recovery.unacked), (1, 4));
        assert_eq!(queue.stats().torn, 1);
        // The queue goes on after the cut: new readings follow and everything reads back.
        append(&mut queue, "d-1", NOW + 10);
        queue.sync().expect("sync");
        queue.start_session();
        let sent = drain(&mut queue);
        assert_eq!(sent.len(), 5);
        // A flipped byte in a record is caught by its checksum.
        drop(queue);
        let mut bytes = std::fs::read(&segment).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&segment, bytes).expect("write");
        let (_, recovery) = DiskQueue::open(settings).expect("reopen");
        assert_eq!(recovery.torn, 1);
    }

    #[test]
    fn at_the_size_cap_old_readings_are_thinned_then_dropped_and_counted() {
        let mut settings = settings("cap");
        settings.max_bytes = 64 * 1024;
        settings.segment_bytes = 8 * 1024;
        settings.thin_interval = Duration::from_secs(60);
        let (mut queue, _) = DiskQueue::open(settings).expect("open");
        // Two devices, one reading every 10 s each, for a long outage.
        let mut appended = 0u64;
        for i in 0..4000i64 {
            for device in ["d-1", "d-2"] {
                append(&mut queue, device, NOW + i * 10_000);
                appended += 1;
            }
            assert!(queue.total_bytes() <= 64 * 1024 + 8 * 1024, "the cap holds");
        }
        queue.sync().expect("sync");
        let stats = queue.stats();
        assert!(stats.thinned > 0, "{stats:?}");
        assert!(stats.dropped > 0, "{stats:?}");
        assert_eq!(queue.depth(), appended - stats.thinned - stats.dropped);
        queue.start_session();
        let sent = drain(&mut queue);
        assert_eq!(sent.len() as u64, appended - stats.thinned - stats.dropped);
        // Thinned stretches hold one reading per device per minute; the newest are complete.
        let newest: Vec<&Record> = sent.iter().filter(|r| r.device == "d-1").collect();
        let tail = &newest[newest.len() - 50..];
        assert!(tail.windows(2).all(|w| w[1].ts_ms - w[0].ts_ms == 10_000));
        // (Buckets are per segment: at a segment boundary two readings may share a minute.)
        // 20 kept readings span at least 15 minutes (unthinned they would span 200 s).
        let head = &newest[..20];
        assert!(
            head[19].ts_ms - head[0].ts_ms >= 15 * 60_000,
            "{:?}",
            head.iter().map(|r| r.ts_ms).collect::<Vec<_>>()
        );
        // Per device, order is kept.
        assert!(newest.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn readings_with_a_fault_survive_thinning() {
        let mut settings = settings("fault");
        settings.max_bytes = 64 * 1024;
        settings.segment_bytes = 8 * 1024;
        let (mut queue, _) = DiskQueue::open(settings).expect("open");
        for i in 0..1500i64 {
            let fault = i % 100 == 7;
            queue
                .append("d-1", NOW + i * 1000, fault, NOW, payload)
                .expect("append");
        }
        queue.sync().expect("sync");
        assert!(queue.stats().thinned > 0);
        assert_eq!(queue.stats().dropped, 0);
        queue.start_session();
        let faults = drain(&mut queue).iter().filter(|r| r.fault).count();
        assert_eq!(faults, 15);
    }

    #[test]
    fn acknowledged_segments_are_deleted_after_the_state_is_durable() {
        let (mut queue, _) = DiskQueue::open(settings("delete")).expect("open");
        queue.start_session();
        for i in 0..1000 {
            append(&mut queue, "d-1", NOW + i);
        }
        queue.sync().expect("sync");
        assert!(queue.segment_count() > 2);
        drain(&mut queue);
        queue.sync().expect("sync");
        assert_eq!(queue.segment_count(), 1);
        assert_eq!(queue.oldest_unacked_ts().expect("read"), None);
    }

    #[test]
    fn a_device_never_seen_starts_its_seq_at_the_clock_in_microseconds() {
        let (queue, _) = DiskQueue::open(settings("fresh")).expect("open");
        assert_eq!(queue.next_seq("d-9", NOW), NOW as u64 * 1000);
    }
}
