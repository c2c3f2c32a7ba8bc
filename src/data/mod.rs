//! Rating data: the one sparse type shared by every trainer, id maps, loaders and splits.

mod archive;
mod dense;
mod load;
mod shuffle;
mod summary;
mod text;
mod write;

pub use load::{load_ids, load_pairs, load_rated_items, load_ratings, parse_ratings, stream_ratings, streamable, Duplicates, Format, LoadOptions, Loaded, StreamReport};
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

/// The two-way map between external ids (as written in a file) and dense indices.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdMap {
    index: FxHashMap<u64, u32>,
    external: Vec<u64>,
}

impl IdMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// The dense index of `id`, assigning the next one if it is new.
    pub fn intern(&mut self, id: u64) -> u32 {
        let next = self.external.len() as u32;
        *self.index.entry(id).or_insert_with(|| {
            self.external.push(id);
            next
        })
    }

    pub fn index_of(&self, id: u64) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub fn external_id(&self, index: u32) -> u64 {
        self.external[index as usize]
    }

    pub fn externals(&self) -> &[u64] {
        &self.external
    }

    pub fn from_externals(external: Vec<u64>) -> Self {
        let index = external.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect();
        Self { index, external }
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
    pub fn external(&self, r: &Rating) -> (u64, u64) {
        (self.users.external_id(r.user), self.items.external_id(r.item))
    }
}
