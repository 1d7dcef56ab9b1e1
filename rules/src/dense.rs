//! Fast paths of the engine's per-reading bookkeeping: turning a reading's named values into a
//! dense array in canonical order, and finding a device's position from its id.
//!
//! Both compare strings exactly (no hash is trusted without a byte comparison); they only avoid
//! general-purpose hashing and out-of-line `memcmp`/`memcpy` calls for the short names and ids
//! telemetry carries.

use std::hash::Hasher;

use wire::bytes::{same_bytes, tail_word};
use wire::{DeviceId, Values};

/// Fills `out` (NaN-initialised, canonical order) from a reading's values. Names outside the
/// canonical set are ignored. The values hold canonical names as their index, so no name is
/// compared here.
pub(crate) fn dense_values(values: &Values, out: &mut [f64]) {
    for (index, value) in values.canonical() {
        if let Some(slot) = out.get_mut(index) {
            *slot = value;
        }
    }
}

/// A small, fast, deterministic hasher (FxHash's multiply-rotate over 8-byte words).
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in &mut words {
            if let Some(word) = chunk.first_chunk::<8>() {
                self.mix(u64::from_le_bytes(*word));
            }
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            self.mix(tail_word(rest));
        }
    }
}

impl IdHasher {
    fn mix(&mut self, word: u64) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

/// Bytes of an id kept in its index slot: ids up to this long are compared without leaving
/// the slot; longer ones are confirmed against the device's own id. With it a slot is 32 bytes
/// and 32-byte aligned, so a lookup reads one cache line.
const INLINE_ID: usize = 19;

/// "No device" in a slot.
const EMPTY: usize = usize::MAX;

/// One slot of the open-addressing table: the id's position, the low half of its hash, its
/// length (saturated at 255; the bytes decide) and its first [`INLINE_ID`] bytes.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    index: usize,
    hash: u32,
    len: u8,
    inline: [u8; INLINE_ID],
}

impl Slot {
    const EMPTY: Slot = Slot {
        index: EMPTY,
        hash: 0,
        len: 0,
        inline: [0; INLINE_ID],
    };

    fn new(hash: u64, id: &[u8], index: usize) -> Slot {
        let mut inline = [0; INLINE_ID];
        for (slot, byte) in inline.iter_mut().zip(id) {
            *slot = *byte;
        }
        Slot {
            index,
            hash: hash as u32,
            len: short_len(id),
            inline,
        }
    }

    /// Whether the slot holds exactly `id`.
    fn holds<'a>(
        &self,
        hash: u64,
        id: &[u8],
        id_at: &impl Fn(usize) -> Option<&'a DeviceId>,
    ) -> bool {
        if self.hash != hash as u32 || self.len != short_len(id) {
            return false;
        }
        match self.inline.get(..id.len()) {
            Some(inline) => same_bytes(inline, id),
            None => id_at(self.index).is_some_and(|d| same_bytes(d.as_str().as_bytes(), id)),
        }
    }
}

/// An id's length as kept in a slot: exact up to 254 bytes, 255 for longer ones.
fn short_len(id: &[u8]) -> u8 {
    u8::try_from(id.len()).unwrap_or(u8::MAX)
}

/// Device id → position in the engine's device list: an open-addressing table (linear probing,
/// at most half full) whose slots carry the id's hash and its bytes (the first
/// [`INLINE_ID`]), so a lookup is usually one slot read. Every hit is an exact byte comparison.
/// The index only maps ids to positions; nothing iterates it, so its order never shows.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdIndex {
    slots: Vec<Slot>,
    len: usize,
}

fn id_hash(id: &[u8]) -> u64 {
    let mut hasher = IdHasher::default();
    hasher.write(id);
    // Length last, so ids that differ only in trailing zero bytes hash apart.
    hasher.mix(id.len() as u64);
    // A finaliser (MurmurHash3's fmix64), so the low bits the table indexes with depend on
    // every byte.
    let mut hash = hasher.finish();
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

impl IdIndex {
    /// The position of `id`; `id_at` returns the id of the device at a position.
    pub(crate) fn get<'a>(
        &self,
        id: &DeviceId,
        id_at: impl Fn(usize) -> Option<&'a DeviceId>,
    ) -> Option<usize> {
        let id = id.as_str().as_bytes();
        let hash = id_hash(id);
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = (hash as u32 as usize) & mask;
        // The table is at most half full, so the probe ends at an empty slot.
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(at)?;
            if slot.index == EMPTY {
                return None;
            }
            if slot.holds(hash, id, &id_at) {
                return Some(slot.index);
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Records `id` at `index` (replacing its position if it is already there).
    pub(crate) fn insert<'a>(
        &mut self,
        id: &DeviceId,
        index: usize,
        id_at: impl Fn(usize) -> Option<&'a DeviceId>,
    ) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let bytes = id.as_str().as_bytes();
        let hash = id_hash(bytes);
        let mask = self.slots.len().saturating_sub(1);
        let mut at = (hash as u32 as usize) & mask;
        for _ in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(at) else {
                return;
            };
            if slot.index == EMPTY {
                *slot = Slot::new(hash, bytes, index);
                self.len += 1;
                return;
            }
            if slot.holds(hash, bytes, &id_at) {
                slot.index = index;
                return;
            }
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![Slot::EMPTY; capacity]);
        let mask = capacity - 1;
        for slot in old.into_iter().filter(|s| s.index != EMPTY) {
            let mut at = (slot.hash as usize) & mask;
            while let Some(target) = self.slots.get_mut(at) {
                if target.index == EMPTY {
                    *target = slot;
                    break;
                }
                at = (at + 1) & mask;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_values_match_a_plain_lookup_for_any_names() {
        let names: Vec<String> = wire::values::CANONICAL
            .iter()
            .map(|c| c.name.to_owned())
            .chain(
                [
                    "",
                    "a",
                    "compressor",
                    "indoor",
                    "indoor_temp_c\0",
                    "indoor_temp_",
                    "zzz",
                    "running\0",
                    "runtime_h_",
                    "\u{ff}",
                    // Vendor values never reach a rule.
                    "x_cop",
                    "x_indoor_temp_c",
                ]
                .map(str::to_owned),
            )
            .collect();
        for skip in 0..names.len() {
            let values: Values = names
                .iter()
                .enumerate()
                .filter(|(i, _)| skip == 0 || i % (skip + 1) != 0)
                .map(|(i, n)| (n.clone(), i as f64))
                .collect();
            let mut fast = vec![f64::NAN; wire::values::CANONICAL.len()];
            dense_values(&values, &mut fast);
            for (i, c) in wire::values::CANONICAL.iter().enumerate() {
                let expected = values.get(c.name);
                assert_eq!(fast[i].is_nan(), expected.is_none(), "{}", c.name);
                if let Some(v) = expected {
                    assert_eq!(fast[i], v, "{}", c.name);
                }
            }
        }
    }

    #[test]
    fn the_index_finds_every_id_short_or_long() {
        for template in ["d-{}", "yq-a-very-long-village-name-{}-hp"] {
            let ids: Vec<DeviceId> = (0..3000)
                .map(|i| DeviceId::parse(&template.replace("{}", &i.to_string())).expect("valid"))
                .collect();
            let mut index = IdIndex::default();
            for (i, id) in ids.iter().enumerate() {
                index.insert(id, i, |p| ids.get(p));
            }
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(index.get(id, |p| ids.get(p)), Some(i));
            }
            let unknown = DeviceId::parse("nobody").expect("valid");
            assert_eq!(index.get(&unknown, |p| ids.get(p)), None);
            // Inserting a known id again adds nothing.
            index.insert(&ids[3], 3, |p| ids.get(p));
            assert_eq!(index.get(&ids[3], |p| ids.get(p)), Some(3));
            assert_eq!(index.len, ids.len());
        }
        assert_eq!(
            IdIndex::default().get(&DeviceId::parse("x").expect("valid"), |_| None),
            None
        );
    }
}
