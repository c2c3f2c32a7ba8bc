//! Blocks on disk: the training ratings cut into the schedule's blocks once and written to a
//! cache file, so a trainer reads each block when the schedule reaches it and only the factors
//! stay in memory (LIBMF's disk mode, in our own form). The input is read piece by piece
//! ([`crate::data::stream_ratings`]) and never held whole.
//!
//! The file: 4096 bytes of magic and padding; the ratings, block after block, naming positions
//! (see [`crate::schedule`]); each block's start, each block's CRC-32, the user and item ids,
//! each user's and item's count of ratings;
//! a JSON header (the input's identity ([`identity`]), the block settings, the counts, a
//! CRC-32 of the metadata); its length; the magic again. A cache is reused only when all of it
//! checks out against the input and the settings asked for; otherwise it is rebuilt
//! ([`build`]). Every block is checked against its CRC-32 again each time it is read, so bytes
//! changed under a running job stop it with an error rather than train on them.

mod build;
mod identity;

use crate::data::{IdMap, LoadOptions, Rating, RatingSummary, RowCounts};
use crate::error::{Error, Result};
use crate::grid::{GridSize, Order, MAX_SIDE};
use identity::Identity;
use std::fs::File;
use std::io::Read;
#[cfg(unix)]
use std::os::unix::fs::FileExt;
#[cfg(windows)]
use windows_io::FileExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"GPUMFBK1";
/// 6: blocks by user take turns among four users (grid::take_turns). 7: a user who runs out
/// hands its turn to the block's next user. 8: ids may be labels, whose texts follow the
/// counts. 9: the header records the input's lines of a user and an item only. A cache of
/// another version is rebuilt, never trained on.
const VERSION: u32 = 9;
const DATA_AT: u64 = 4096;
const RECORD: u64 = 12;
/// Ratings per block at the least: smaller blocks cost more in reads than they save in memory.
pub const MIN_BLOCK_RATINGS: u64 = 4096;

/// The cache's directory, made when it is missing and its parent is a directory, as
/// --checkpoint-dir is; whether it was made here.
fn make_dir(dir: &Path) -> Result<bool> {
    if crate::output::check_dir(dir, "--cache-dir")? {
        return Ok(false);
    }
    std::fs::create_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(true)
}

/// What the blocks are cut for: the grid (`None`: the fewest blocks that fit `memory`), the
/// order within a block, the seed, and the memory for ratings that `threads` readers share.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub grid: Option<GridSize>,
    pub order: Order,
    pub seed: u64,
    pub memory: u64,
    pub threads: usize,
}

/// The facts a reused cache must match.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Header {
    version: u32,
    input: Identity,
    skip_bad_lines: bool,
    format: String,
    user_blocks: usize,
    item_blocks: usize,
    by_user: bool,
    seed: u64,
    users: usize,
    items: usize,
    ratings: u64,
    skipped_lines: u64,
    /// Lines of a user and an item only (each read as one event), and the first one's line:
    /// what a loss other than a one-class one refuses ([`crate::data::check_values`]).
    #[serde(default)]
    events: Option<(u64, u64)>,
    sum: f64,
    sum_squares: f64,
    min: f32,
    max: f32,
    /// The first three distinct rating values (fewer when there are fewer): whether a binary
    /// loss can take the ratings as labels.
    values: Vec<f32>,
    /// Bytes of the users' and items' id labels after the counts ([`IdMap::labels_as_bytes`]).
    labels_bytes: u64,
    metadata_crc: u32,
}

/// How much of a cache [`DiskBlocks::open`] reads to check it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Every block against its checksum: a cache found on disk.
    EveryBlock,
    /// The header and block table: a cache this run has just written and checksummed, whose
    /// blocks a second full read would only confirm.
    Metadata,
}

/// An open, checked block cache.
#[derive(Debug)]
pub struct DiskBlocks {
    file: File,
    pub path: PathBuf,
    /// Block b holds ratings `starts[b]..starts[b + 1]` of the data.
    starts: Vec<u64>,
    /// Each block's CRC-32, checked at every read.
    crcs: Vec<u32>,
    pub users: IdMap,
    pub items: IdMap,
    pub grid: GridSize,
    pub order: Order,
    pub seed: u64,
    /// How many training ratings there are, with their sums and range.
    pub summary: RatingSummary,
    /// Each user's and item's training ratings, by id.
    pub counts: RowCounts,
    /// Malformed lines skipped when the cache was built.
    pub skipped_lines: u64,
    /// Lines of a user and an item only in the input, and the first one's line.
    pub events: Option<(u64, u64)>,
    /// Whether this run built the cache (false: reused).
    pub built: bool,
    /// Whether the cache is a pipe's, unlinked once open (it goes with this run).
    pub temporary: bool,
}

impl DiskBlocks {
    /// The cache for `input` in `dir` (named after the input), reused when it checks out,
    /// else built; `note` hears what happened, for people. A missing `dir` is made (its parent
    /// must be a directory), and taken away again if the cache could not be built in it.
    pub fn open_or_build(input: &Path, load: &LoadOptions, dir: &Path, settings: &CacheSettings, note: impl FnMut(&str)) -> Result<DiskBlocks> {
        let made = make_dir(dir)?;
        let built = DiskBlocks::open_or_build_in(input, load, dir, settings, note);
        if made && (built.is_err() || built.as_ref().is_ok_and(|cache| cache.temporary)) {
            // Only if still empty: a failed build removes its own files, a temporary cache
            // is unlinked once open.
            let _ = std::fs::remove_dir(dir);
        }
        built
    }

    fn open_or_build_in(input: &Path, load: &LoadOptions, dir: &Path, settings: &CacheSettings, mut note: impl FnMut(&str)) -> Result<DiskBlocks> {
        let name = input.file_name().ok_or_else(|| Error::InvalidParameter(format!("{}: not a file name", input.display())))?;
        if std::fs::metadata(input).is_ok_and(|m| !m.is_file()) {
            return DiskBlocks::build_temporary(input, &name.to_string_lossy(), load, dir, settings, note);
        }
        let path = dir.join(format!("{}.gpumf-blocks", name.to_string_lossy()));
        let identity = Identity::of(input)?;
        if path.exists() {
            // Only a file that says it is a block cache is ever replaced.
            let mut magic = [0u8; 8];
            let ours = File::open(&path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == MAGIC;
            if !ours {
                return Err(Error::InvalidParameter(format!(
                    "{} exists and is not a gpumf block cache; gpumf will not replace it: move it, or pass --cache-dir",
                    path.display()
                )));
            }
            match DiskBlocks::open(&path, input, &identity, load, settings, Check::EveryBlock) {
                Ok(cache) => {
                    note(&format!("reusing the block cache {} ({} ratings in {} blocks)", path.display(), cache.summary.count, cache.grid));
                    return Ok(cache);
                }
                Err(why) => note(&format!("the block cache {} cannot be used ({why}); rebuilding it", path.display())),
            }
        }
        note(&format!("writing the block cache {} (the input is read once, piece by piece)", path.display()));
        build::build(input, &identity, load, dir, &path, settings)?;
        let mut cache = DiskBlocks::open(&path, input, &identity, load, settings, Check::Metadata).map_err(|why| Error::Data(format!("{}: the block cache just written does not check out: {why}", path.display())))?;
        cache.built = true;
        Ok(cache)
    }

    /// The cache of a pipe or device, which gives its bytes once, so no cache can be checked
    /// against it later: written under a name no other run has, and unlinked as soon as it is
    /// open, so that it goes when training ends, however it ends.
    fn build_temporary(input: &Path, name: &str, load: &LoadOptions, dir: &Path, settings: &CacheSettings, mut note: impl FnMut(&str)) -> Result<DiskBlocks> {
        let identity = Identity::of_stream(input)?;
        let fail = |e: std::io::Error| Error::Data(format!("writing the block cache in {} failed: {e}; free some space or choose another place with --cache-dir", dir.display()));
        let path = tempfile::Builder::new().prefix(&format!("{name}.")).suffix(".gpumf-blocks").tempfile_in(dir).map_err(fail)?.into_temp_path();
        note(&format!("writing a temporary block cache {} ({} is not a regular file: it is read once, piece by piece, and the cache is removed after training)", path.display(), input.display()));
        build::build(input, &identity, load, dir, &path, settings)?;
        let mut cache = DiskBlocks::open(&path, input, &identity, load, settings, Check::Metadata).map_err(|why| Error::Data(format!("{}: the block cache just written does not check out: {why}", path.display())))?;
        (cache.built, cache.temporary) = (true, true);
        // Unlinked here; the open file is read until the cache is dropped.
        path.close().map_err(|e| Error::io(&cache.path, e))?;
        Ok(cache)
    }

    /// Opens and checks the cache at `path` against `input` and `settings`: with
    /// [`Check::EveryBlock`] every byte of it, so a stale, truncated or corrupt cache is never
    /// trained on.
    fn open(path: &Path, input: &Path, identity: &Identity, load: &LoadOptions, settings: &CacheSettings, check: Check) -> std::result::Result<DiskBlocks, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let (header, json_len) = read_header(&file, len)?;
        let expected = Header { metadata_crc: header.metadata_crc, ..expected_header(identity, load, settings, &header) };
        if header.version != VERSION {
            return Err(format!("written by another gpumf (cache version {})", header.version));
        }
        if let Some(changes) = header.input.changes(identity) {
            return Err(format!("{} is not the file it was written from: {changes} differ", input.display()));
        }
        if header != expected {
            return Err("written for other settings (seed, blocks, order or loader flags)".into());
        }
        let Metadata { starts, crcs, users, items, counts } = read_metadata(&file, &header, len, json_len)?;
        let grid = GridSize { user_blocks: header.user_blocks, item_blocks: header.item_blocks };
        let cache = DiskBlocks {
            file,
            path: path.into(),
            starts,
            crcs,
            users,
            items,
            grid,
            order: if header.by_user { Order::ByUser } else { Order::Shuffled },
            seed: header.seed,
            summary: RatingSummary::from_parts(header.ratings, header.sum, header.sum_squares, (header.min, header.max), &header.values),
            counts,
            skipped_lines: header.skipped_lines,
            events: header.events,
            built: false,
            temporary: false,
        };
        let largest = cache.largest_block();
        if largest * (settings.threads as u64 + 1) > settings.memory.max(1) && settings.grid.is_none() {
            return Err(format!("its blocks of up to {} do not fit --memory with one for {}", crate::resources::human_bytes(largest), readers_named(settings.threads)));
        }
        let mut buf = Vec::new();
        for b in (0..cache.len()).filter(|_| check == Check::EveryBlock) {
            cache.read_block(b, &mut buf).map_err(|e| e.to_string())?;
        }
        Ok(cache)
    }

    /// Blocks in the cache.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.summary.count == 0
    }

    /// Ratings of block `b`.
    pub fn block_len(&self, b: usize) -> u64 {
        self.starts[b + 1] - self.starts[b]
    }

    /// Bytes of the largest block.
    pub fn largest_block(&self) -> u64 {
        (0..self.len()).map(|b| self.block_len(b)).max().unwrap_or(0) * RECORD
    }

    /// Reads block `b` into `buf` (its ratings name positions), checked against its CRC-32: a
    /// block changed on disk since the cache was opened is an error naming it.
    pub fn read_block(&self, b: usize, buf: &mut Vec<Rating>) -> Result<()> {
        buf.clear();
        buf.resize(self.block_len(b) as usize, Rating { user: 0, item: 0, value: 0.0 });
        self.file.read_exact_at(bytemuck::cast_slice_mut(buf), DATA_AT + self.starts[b] * RECORD).map_err(|e| Error::io(&self.path, e))?;
        if crc32fast::hash(bytemuck::cast_slice(buf)) != self.crcs[b] {
            return Err(Error::Data(format!("{}: block {b} fails its checksum: the cache changed on disk (corrupt); delete it, and the next run rebuilds it", self.path.display())));
        }
        Ok(())
    }

    /// Ratings per block, for the schedule.
    pub fn block_ranges(&self) -> Vec<std::ops::Range<usize>> {
        self.starts.windows(2).map(|w| w[0] as usize..w[1] as usize).collect()
    }
}

/// The cache file's header and its length in bytes, after checking the magic at both ends.
fn read_header(file: &File, len: u64) -> std::result::Result<(Header, u64), String> {
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0).map_err(|_| "truncated".to_string())?;
    if &magic != MAGIC || len < DATA_AT + 16 {
        return Err("not a gpumf block cache, or truncated".into());
    }
    let mut tail = [0u8; 16];
    file.read_exact_at(&mut tail, len - 16).map_err(|e| e.to_string())?;
    if &tail[8..] != MAGIC {
        return Err("truncated (no end marker)".into());
    }
    let json_len = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
    if json_len > len - 16 - DATA_AT {
        return Err("corrupt header length".into());
    }
    let mut json = vec![0u8; json_len as usize];
    file.read_exact_at(&mut json, len - 16 - json_len).map_err(|e| e.to_string())?;
    let header: Header = serde_json::from_slice(&json).map_err(|e| format!("corrupt header: {e}"))?;
    Ok((header, json_len))
}

/// The cache's tables after its ratings: each block's start and checksum, the ids, the rows'
/// rating counts.
struct Metadata {
    starts: Vec<u64>,
    crcs: Vec<u32>,
    users: IdMap,
    items: IdMap,
    counts: RowCounts,
}

/// Reads and checks (length, checksum, block table) the tables that `header` describes.
fn read_metadata(file: &File, header: &Header, len: u64, json_len: u64) -> std::result::Result<Metadata, String> {
    // Sizes from a header that may lie: any that overflows is no cache this file can be.
    let sizes = || -> Option<(usize, u64, u64, u64)> {
        let blocks = header.user_blocks.checked_mul(header.item_blocks)?;
        let data_bytes = header.ratings.checked_mul(RECORD)?;
        let rows = (header.users as u64).checked_add(header.items as u64)?;
        let metadata_bytes = 12u64.checked_mul(blocks as u64)?.checked_add(8)?.checked_add(12u64.checked_mul(rows)?)?.checked_add(header.labels_bytes)?;
        let total = DATA_AT.checked_add(data_bytes)?.checked_add(metadata_bytes)?.checked_add(json_len)?.checked_add(16)?;
        Some((blocks, data_bytes, metadata_bytes, total))
    };
    let (blocks, data_bytes, metadata_bytes, total) = sizes().ok_or("corrupt header: its counts overflow")?;
    if len != total {
        return Err(format!("{len} bytes long, not the {total} its header implies (truncated?)"));
    }
    let mut metadata = vec![0u8; metadata_bytes as usize];
    file.read_exact_at(&mut metadata, DATA_AT + data_bytes).map_err(|e| e.to_string())?;
    if crc32fast::hash(&metadata) != header.metadata_crc {
        return Err("metadata checksum mismatch (corrupt)".into());
    }
    let words = |at: usize, n: usize| -> Vec<u64> { metadata[at..at + 8 * n].chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect() };
    let starts = words(0, blocks + 1);
    let crc_at = 8 * (blocks + 1);
    let crcs: Vec<u32> = metadata[crc_at..crc_at + 4 * blocks].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4"))).collect();
    let ids_at = crc_at + 4 * blocks;
    let users = IdMap::from_externals(words(ids_at, header.users));
    let items = IdMap::from_externals(words(ids_at + 8 * header.users, header.items));
    let counts_at = ids_at + 8 * (header.users + header.items);
    let labels_at = counts_at + 4 * (header.users + header.items);
    let mut counts = metadata[counts_at..labels_at].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4")));
    let counts = RowCounts { users: counts.by_ref().take(header.users).collect(), items: counts.collect() };
    let mut labels = &metadata[labels_at..];
    let users = users.with_labels_from(&mut labels).map_err(|e| format!("corrupt user labels: {e}"))?;
    let items = items.with_labels_from(&mut labels).map_err(|e| format!("corrupt item labels: {e}"))?;
    if starts.first() != Some(&0) || starts.last() != Some(&header.ratings) || starts.windows(2).any(|w| w[0] > w[1]) {
        return Err("corrupt block table".into());
    }
    Ok(Metadata { starts, crcs, users, items, counts })
}

#[cfg(test)]
impl DiskBlocks {
    /// Writes `ratings` over block `b` of the file with a checksum that agrees: a cache written
    /// wrong, for tests of what reads it.
    pub(crate) fn overwrite_block(&mut self, b: usize, ratings: &[Rating]) {
        use std::os::unix::fs::FileExt;
        assert_eq!(ratings.len() as u64, self.block_len(b), "a block keeps its length");
        let file = std::fs::OpenOptions::new().write(true).open(&self.path).unwrap();
        file.write_all_at(bytemuck::cast_slice(ratings), DATA_AT + self.starts[b] * RECORD).unwrap();
        self.crcs[b] = crc32fast::hash(bytemuck::cast_slice(ratings));
    }
}

/// The header a cache for this input and these settings has (counts from `found`).
fn expected_header(identity: &Identity, load: &LoadOptions, settings: &CacheSettings, found: &Header) -> Header {
    let grid = settings.grid.unwrap_or(GridSize { user_blocks: found.user_blocks, item_blocks: found.item_blocks });
    Header {
        version: VERSION,
        input: identity.clone(),
        skip_bad_lines: load.skip_bad_lines,
        format: format!(
            "{:?}{}{}",
            load.format,
            load.positive_threshold.map_or(String::new(), |t| format!(", ratings of {t} and above as 1")),
            load.columns.as_ref().map_or(String::new(), |c| format!(", columns {c}"))
        ),
        user_blocks: grid.user_blocks.min(found.users.max(1)),
        item_blocks: grid.item_blocks.min(found.items.max(1)),
        by_user: settings.order == Order::ByUser,
        seed: settings.seed,
        ..found.clone()
    }
}

/// The fewest blocks a side may have so `threads` readers and the block being ordered fit
/// `memory`, for `ratings` ratings; an error names the smallest memory that works.
fn grid_for(ratings: u64, users: usize, items: usize, settings: &CacheSettings) -> Result<GridSize> {
    if let Some(grid) = settings.grid {
        return Ok(grid);
    }
    let readers = settings.threads as u64 + 1;
    let smallest = readers * MIN_BLOCK_RATINGS * RECORD;
    if settings.memory < smallest {
        return Err(Error::InvalidParameter(format!(
            "--memory {}: too small to hold a block of {MIN_BLOCK_RATINGS} ratings for {}, and one more; the smallest budget that works is {}",
            crate::resources::human_bytes(settings.memory),
            readers_named(settings.threads),
            crate::resources::human_bytes_up(smallest)
        )));
    }
    let per_block = (settings.memory / readers / RECORD).max(1);
    // Blocks hold about ratings / blocks each; leave room for uneven ones.
    let blocks = (2 * ratings).div_ceil(per_block).max(1);
    let side = ((blocks as f64).sqrt().ceil() as usize).max(1);
    let (u, i) = (side.min(users.max(1)), blocks.div_ceil(side.min(users.max(1)) as u64) as usize);
    let i = i.min(items.max(1)).max(1);
    // Few items: the users' side takes the blocks the items' cannot.
    let u = if ((u * i) as u64) < blocks { (blocks.div_ceil(i as u64) as usize).min(users.max(1)) } else { u };
    let grid = GridSize { user_blocks: u, item_blocks: i };
    if grid.user_blocks > MAX_SIDE || grid.item_blocks > MAX_SIDE || (grid.user_blocks as u64 * grid.item_blocks as u64) < blocks {
        // As many blocks as the sides allow: no more than a block a user and item.
        let most_blocks = (users.clamp(1, MAX_SIDE) * items.clamp(1, MAX_SIDE)) as u64;
        let need = (2 * ratings).div_ceil(most_blocks) * RECORD * readers;
        return Err(Error::InvalidParameter(format!(
            "--memory {}: {} over {} and {} cannot be cut into blocks that small; the smallest budget that works is {}",
            crate::resources::human_bytes(settings.memory),
            crate::resources::counted(ratings as usize, "rating"),
            crate::resources::counted(users, "user"),
            crate::resources::counted(items, "item"),
            crate::resources::human_bytes_up(need.max(smallest))
        )));
    }
    Ok(grid)
}

/// Who reads blocks at once: "each of 2 threads", or "the one reader" (a CPU thread, or the GPU).
fn readers_named(threads: usize) -> String {
    if threads == 1 { "the one reader".into() } else { format!("each of {threads} threads") }
}

/// Reads and writes at an offset, which Unix's `FileExt` gives whole; on Windows
/// `seek_read`/`seek_write` may stop short, so they loop as `read_exact_at`/`write_all_at` do.
#[cfg(windows)]
pub(super) mod windows_io {
    use std::fs::File;
    use std::io::{Error, ErrorKind, Result};
    use std::os::windows::fs::FileExt as _;

    pub trait FileExt {
        fn read_exact_at(&self, buf: &mut [u8], at: u64) -> Result<()>;
        fn write_all_at(&self, buf: &[u8], at: u64) -> Result<()>;
    }

    impl FileExt for File {
        fn read_exact_at(&self, mut buf: &mut [u8], mut at: u64) -> Result<()> {
            while !buf.is_empty() {
                match self.seek_read(buf, at) {
                    Ok(0) => return Err(Error::new(ErrorKind::UnexpectedEof, "failed to fill whole buffer")),
                    Ok(n) => {
                        buf = &mut buf[n..];
                        at += n as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }

        fn write_all_at(&self, mut buf: &[u8], mut at: u64) -> Result<()> {
            while !buf.is_empty() {
                match self.seek_write(buf, at) {
                    Ok(0) => return Err(Error::new(ErrorKind::WriteZero, "failed to write whole buffer")),
                    Ok(n) => {
                        buf = &buf[n..];
                        at += n as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_whose_counts_overflow_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("r.csv");
        let lines: String = (0..2000).map(|i| format!("{},{},{}\n", i % 97, i % 89, 1 + i % 5)).collect();
        std::fs::write(&input, lines).unwrap();
        let settings = CacheSettings { grid: None, order: Order::Shuffled, seed: 1, memory: 1 << 20, threads: 1 };
        let cache = DiskBlocks::open_or_build(&input, &LoadOptions::default(), dir.path(), &settings, |_| {}).unwrap();
        let file = File::open(&cache.path).unwrap();
        let len = file.metadata().unwrap().len();
        let (header, json_len) = read_header(&file, len).unwrap();
        assert!(read_metadata(&file, &header, len, json_len).is_ok(), "the cache as written reads");
        // 12 bytes a row, so 2^62 more users wrap round to the true length in 64 bits.
        for lie in [
            Header { users: header.users + (1 << 62), ..header.clone() },
            Header { users: usize::MAX, ..header.clone() },
            Header { ratings: u64::MAX / 2, ..header.clone() },
            Header { user_blocks: usize::MAX, item_blocks: 3, ..header.clone() },
        ] {
            let why = read_metadata(&file, &lie, len, json_len).err().expect("a lying header is refused");
            assert!(why.contains("its counts overflow"), "{why}");
        }
    }

    /// However few users or items there are, the grid has the blocks that `--memory` needs,
    /// and where no grid can, the budget the error names works.
    #[test]
    fn the_grid_fits_memory_on_lopsided_sides_and_the_named_budget_works() {
        let ratings = 1_000_000;
        let settings = |memory| CacheSettings { grid: None, order: Order::Shuffled, seed: 1, memory, threads: 1 };
        for (users, items) in [(100_000, 1), (1, 100_000), (50_000, 3), (1000, 1000), (1, 1), (2, 1)] {
            for memory in [200 << 10, 1 << 20, 8 << 20] {
                let (memory, grid) = match grid_for(ratings, users, items, &settings(memory)) {
                    Ok(grid) => (memory, grid),
                    Err(e) => {
                        let e = e.to_string();
                        assert!(users * items < 100_000 && e.contains("smallest budget that works is "), "{users} x {items}, {memory}: {e}");
                        let named = crate::resources::parse_size(&e.rsplit("works is ").next().unwrap().replace(' ', "")).unwrap();
                        (named, grid_for(ratings, users, items, &settings(named)).unwrap_or_else(|e| panic!("{users} x {items}: the named {named} fails: {e}")))
                    }
                };
                assert!(grid.user_blocks <= users && grid.item_blocks <= items, "{users} x {items}: {grid}");
                // Blocks of about ratings / blocks, with twice that room, for two readers.
                let per_block = memory / 2 / RECORD;
                assert!((2 * ratings).div_ceil((grid.user_blocks * grid.item_blocks) as u64) <= per_block, "{users} x {items}: {grid} for {memory}");
            }
        }
    }
}
