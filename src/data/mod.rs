//! Rating data: the one sparse type shared by every trainer, id maps, loaders and splits.

mod archive;
mod dense;
mod duplicates;
mod lines;
mod lists;
mod load;
mod options;
mod shuffle;
mod stream;
mod summary;
mod text;
mod write;

pub use lines::{ITEM_COLUMNS, RATING_COLUMNS, USER_COLUMNS};
pub use lists::{load_ids, load_pairs, load_rated_items, RatedItem};
pub use load::{load_ratings, parse_ratings, Loaded};
pub use options::{check_values, Column, Columns, Duplicates, Format, LoadOptions};
pub use stream::{loaded_bytes_bound, stream_ratings, streamable, StreamReport};
pub use shuffle::{by_user, group_by_key, shuffled, tiled};
pub use summary::{RatingSummary, RowCounts};
pub use text::{quoted, read_text};
pub use write::{write_events, write_ratings, written_size, WriteFormat};

use rustc_hash::FxHashMap;

/// Index meaning "not known to the model": a test user or item never seen in training.
pub const UNKNOWN: u32 = u32::MAX;

/// One known entry of the rating matrix, with dense 0-based indices.
///
/// `#[repr(C)]` and `Pod` so a slice of ratings uploads to the GPU as it is (12 bytes each).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Rating {
    pub user: u32,
    pub item: u32,
    pub value: f32,
}

/// The top bit of a labelled id's key ([`IdToken`]): no number read as an id has it.
pub const LABEL_BIT: u64 = 1 << 63;

/// An id as a file writes it. A non-negative integer below 2^63, written without leading zeros,
/// is its own key, as it always was; any other text (an Amazon ASIN or ISBN such as
/// 0439023483, a Last.fm hash, a name) is a *label*, whose key is a
/// 63-bit hash of its bytes with [`LABEL_BIT`] set, so files agree on keys without a shared
/// table and every map, cache and split keyed by u64 takes labels as they are. The text goes
/// with the id map, for writing results back in the user's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdToken<'a> {
    Number(u64),
    Label(u64, &'a [u8]),
}

impl<'a> IdToken<'a> {
    /// The id in `field` (quotes and spaces around it trimmed by the caller). A negative or
    /// fractional number is an error rather than a label: in a file of numeric ids it is a
    /// fault (a -1 for "missing", columns swapped), not a name.
    pub fn read(field: &'a [u8], what: &str) -> std::result::Result<IdToken<'a>, String> {
        if field.is_empty() {
            return Err(format!("missing field: the {what} id is empty"));
        }
        let mut n: u64 = 0;
        for &d in field {
            let digit = d.wrapping_sub(b'0');
            if digit > 9 {
                return IdToken::not_a_number(field, what);
            }
            match n.checked_mul(10).and_then(|v| v.checked_add(digit as u64)) {
                Some(v) => n = v,
                None => return Ok(IdToken::Label(label_key(field), field)),
            }
        }
        let zero_led = field.len() > 1 && field[0] == b'0';
        Ok(if n < LABEL_BIT && !zero_led { IdToken::Number(n) } else { IdToken::Label(label_key(field), field) })
    }

    /// A field with a character other than a digit: a label, unless it is a number (with a
    /// digit: "NaN" or "Inf" may be a name).
    fn not_a_number(field: &'a [u8], what: &str) -> std::result::Result<IdToken<'a>, String> {
        if field.iter().any(u8::is_ascii_digit) && std::str::from_utf8(field).is_ok_and(|t| t.parse::<f64>().is_ok()) {
            return Err(format!("bad {what} id {}: ids are non-negative integers, or labels that are not numbers", quoted(&String::from_utf8_lossy(field))));
        }
        Ok(IdToken::Label(label_key(field), field))
    }

    pub fn key(&self) -> u64 {
        match *self {
            IdToken::Number(n) | IdToken::Label(n, _) => n,
        }
    }
}

/// A label's key: FNV-1a over its bytes, fixed forever (model files and caches keep keys), with
/// [`LABEL_BIT`] set. Two labels of one map that hash alike are an error ([`IdMap::add_label`]).
fn label_key(text: &[u8]) -> u64 {
    let hash = text.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    hash | LABEL_BIT
}

/// The error for two labels with one key (one chance in about 2^63 a pair).
pub(crate) fn labels_clash(one: &[u8], other: &[u8]) -> String {
    let (one, other) = (String::from_utf8_lossy(one), String::from_utf8_lossy(other));
    format!("the ids {} and {} have the same 63-bit hash; rename one of them", quoted(&one), quoted(&other))
}

/// An id read on its own (a flag's value, a line of a list), with its text where it is a
/// label, so that an id a model lacks can still be written back as it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalId {
    pub key: u64,
    pub label: Option<Box<str>>,
}

impl ExternalId {
    pub fn parse(text: &str, what: &str) -> std::result::Result<ExternalId, String> {
        Ok(match IdToken::read(lines::trim_field(text.as_bytes()), what)? {
            IdToken::Number(key) => ExternalId { key, label: None },
            IdToken::Label(key, field) => ExternalId { key, label: Some(String::from_utf8_lossy(field).into()) },
        })
    }
}

impl std::fmt::Display for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Shown { key: self.key, label: self.label.as_deref() }.fmt(f)
    }
}

/// An id to print as the user wrote it: its label where it has one, else its number.
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a> {
    pub key: u64,
    pub label: Option<&'a str>,
}

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.label {
            Some(label) => f.write_str(label),
            None => write!(f, "{}", self.key),
        }
    }
}

/// The two-way map between external ids (as written in a file: their keys, [`IdToken`]) and
/// dense indices, with the texts of labelled ids.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdMap {
    index: FxHashMap<u64, u32>,
    external: Vec<u64>,
    /// Each labelled key's text.
    labels: FxHashMap<u64, Box<str>>,
}

impl IdMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// The dense index of `id`, assigning the next one if it is new.
    pub fn intern(&mut self, id: u64) -> u32 {
        self.intern_new(id).0
    }

    /// [`intern`](Self::intern), and whether `id` was new.
    pub fn intern_new(&mut self, id: u64) -> (u32, bool) {
        let next = self.external.len();
        let index = *self.index.entry(id).or_insert_with(|| {
            self.external.push(id);
            next as u32
        });
        (index, self.external.len() > next)
    }

    /// The dense index of `other`'s id at `index`, assigning the next one if it is new, with
    /// its label.
    pub fn intern_from(&mut self, other: &IdMap, index: u32) -> u32 {
        let key = other.external_id(index);
        if let Some(label) = other.labels.get(&key) {
            self.labels.entry(key).or_insert_with(|| label.clone());
        }
        self.intern(key)
    }

    /// Records the text of a labelled key; an error where another text has the same key.
    pub fn add_label(&mut self, key: u64, text: &[u8]) -> std::result::Result<(), String> {
        match self.labels.get(&key) {
            Some(known) if known.as_bytes() != text => Err(labels_clash(known.as_bytes(), text)),
            Some(_) => Ok(()),
            None => {
                self.labels.insert(key, String::from_utf8_lossy(text).into());
                Ok(())
            }
        }
    }

    /// Every label with its key, in no fixed order.
    pub fn labels(&self) -> impl Iterator<Item = (u64, &str)> {
        self.labels.iter().map(|(&k, t)| (k, &**t))
    }

    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    pub fn index_of(&self, id: u64) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub fn external_id(&self, index: u32) -> u64 {
        self.external[index as usize]
    }

    /// The id at `index` as the user wrote it, to print: its label, or its number.
    pub fn shown(&self, index: u32) -> Shown<'_> {
        self.shown_key(self.external_id(index))
    }

    /// Key `key` as the user wrote it, where this map knows its label.
    pub fn shown_key(&self, key: u64) -> Shown<'_> {
        Shown { key, label: self.labels.get(&key).map(|t| &**t) }
    }

    pub fn externals(&self) -> &[u64] {
        &self.external
    }

    pub fn from_externals(external: Vec<u64>) -> Self {
        let index = external.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect();
        Self { index, external, labels: FxHashMap::default() }
    }

    /// The same map with `labels` (key, text) for its labelled ids; an error where two texts
    /// share a key.
    pub fn with_labels<'a>(mut self, labels: impl IntoIterator<Item = (u64, &'a [u8])>) -> std::result::Result<Self, String> {
        for (key, text) in labels {
            self.add_label(key, text)?;
        }
        Ok(self)
    }

    /// The labels as model files and block caches keep them: a u64 count, then each labelled
    /// row's u32 index, u32 length and UTF-8 text, in row order.
    pub fn labels_as_bytes(&self) -> Vec<u8> {
        let mut labelled: Vec<(u32, &str)> = self.labels().filter_map(|(key, text)| Some((self.index_of(key)?, text))).collect();
        labelled.sort_unstable();
        let mut out = (labelled.len() as u64).to_le_bytes().to_vec();
        for (row, text) in labelled {
            out.extend(row.to_le_bytes());
            out.extend((text.len() as u32).to_le_bytes());
            out.extend(text.as_bytes());
        }
        out
    }

    /// The same map with the labels [`labels_as_bytes`](Self::labels_as_bytes) wrote at the
    /// start of `bytes` (taken from it); none where `bytes` is empty. Each text must be its
    /// row's id.
    pub fn with_labels_from(self, bytes: &mut &[u8]) -> std::result::Result<IdMap, String> {
        fn take<'a>(bytes: &mut &'a [u8], len: usize) -> std::result::Result<&'a [u8], String> {
            let (head, rest) = bytes.split_at_checked(len).ok_or("they end early")?;
            *bytes = rest;
            Ok(head)
        }
        let word = |bytes: &mut &[u8]| -> std::result::Result<u32, String> { Ok(u32::from_le_bytes(take(bytes, 4)?.try_into().expect("4 bytes"))) };
        if bytes.is_empty() {
            return Ok(self);
        }
        let count = u64::from_le_bytes(take(bytes, 8)?.try_into().expect("8 bytes"));
        if count > self.len() as u64 {
            return Err(format!("{count} labels for {} ids", self.len()));
        }
        let mut labels = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let row = word(bytes)?;
            let len = word(bytes)?;
            let text = take(bytes, len as usize)?;
            let key = *self.external.get(row as usize).ok_or_else(|| format!("a label of row {row} of {}", self.len()))?;
            if IdToken::read(text, "label").map(|t| t.key()) != Ok(key) {
                return Err(format!("the label of row {row} is not that row's id"));
            }
            labels.push((key, text));
        }
        self.with_labels(labels)
    }

    pub fn len(&self) -> usize {
        self.external.len()
    }

    /// Distinct ids in the lookup: fewer than [`IdMap::len`] when a table read from a file
    /// repeats an id.
    pub fn distinct(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.external.is_empty()
    }
}

/// A set of ratings with its own id maps, as loaded from one file.
#[derive(Clone, Debug, Default)]
pub struct RatingSet {
    pub entries: Vec<Rating>,
    pub users: IdMap,
    pub items: IdMap,
}

impl RatingSet {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Builds a set from external-id triplets, interning ids in order of appearance.
    pub fn from_triplets(triplets: impl IntoIterator<Item = (u64, u64, f32)>) -> Self {
        let mut set = RatingSet::default();
        for (u, i, r) in triplets {
            let user = set.users.intern(u);
            let item = set.items.intern(i);
            set.entries.push(Rating { user, item, value: r });
        }
        set
    }

    /// External ids of an entry, for writing results back in the user's terms.
    pub fn external(&self, r: &Rating) -> (Shown<'_>, Shown<'_>) {
        (self.users.shown(r.user), self.items.shown(r.item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_numbers_or_labels_and_two_texts_of_one_key_are_refused() {
        fn read(t: &str) -> std::result::Result<IdToken<'_>, String> {
            IdToken::read(t.as_bytes(), "user")
        }
        assert_eq!(read("42"), Ok(IdToken::Number(42)));
        assert_eq!(read("0"), Ok(IdToken::Number(0)));
        for label in ["042", "A1B2", "NaN", "hans müller", "9223372036854775808", "99999999999999999999"] {
            let id = read(label).unwrap();
            assert!(matches!(id, IdToken::Label(key, text) if key >= LABEL_BIT && text == label.as_bytes()), "{label}: {id:?}");
        }
        for number in ["-3", "2.5", "1e3"] {
            assert!(read(number).unwrap_err().contains("labels that are not numbers"), "{number}");
        }
        assert!(read("").unwrap_err().contains("empty"));
        let mut ids = IdMap::new();
        let key = read("A1").unwrap().key();
        ids.add_label(key, b"A1").unwrap();
        ids.add_label(key, b"A1").unwrap();
        let e = ids.add_label(key, b"other").unwrap_err();
        assert!(e.contains("\"A1\" and \"other\" have the same 63-bit hash"), "{e}");
        let e = ExternalId::parse(" \"-1\" ", "item").unwrap_err();
        assert!(e.contains("bad item id \"-1\""), "{e}");
        assert_eq!(ExternalId::parse("\"B00X\"", "item").unwrap().to_string(), "B00X");
    }
}
