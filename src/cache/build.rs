//! Writing a block cache, one step a function: the input read once into a spill file of dense
//! ratings ([`spill_input`]); the ratings laid out block by block in the cache ([`lay_out`]); each
//! block ordered as the schedule would order it, and checksummed ([`order_blocks`]); the
//! metadata and header after them ([`write_tail`]). All of it goes to temporary files beside
//! the cache, named `.NAME.…partial`: the cache is renamed into place only when whole, a
//! failure or Ctrl-C removes them, and those a killed build left are removed by the next.

use super::identity::Identity;
use super::{expected_header, grid_for, CacheSettings, FileExt, Header, DATA_AT, MAGIC, RECORD, VERSION};
use crate::data::{stream_ratings, IdMap, LoadOptions, Rating, RatingSummary, RowCounts, StreamReport};
use crate::error::{Error, Result};
use crate::grid::{Axis, GridSize, Order};
use crate::rng::part_rng;
use rand::seq::SliceRandom;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

/// A partial file untouched for this long belongs to a build that is no longer running.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Builds the cache for `input` at `path` (in `dir`), whose input is `identity`.
pub(super) fn build(input: &Path, identity: &Identity, load: &LoadOptions, dir: &Path, path: &Path, settings: &CacheSettings) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    remove_abandoned(dir, &name);
    let _interrupt = crate::interrupt::catch();
    let fail = |e: std::io::Error| Error::Data(format!("writing the block cache in {} failed: {e}; free some space or choose another place with --cache-dir", dir.display()));
    let spill = tempfile::Builder::new().prefix(&format!(".{name}.spill.")).suffix(".partial").tempfile_in(dir).map_err(fail)?;
    // What no size bounds (a pipe, gzip) stops before the spill and the cache could fill the
    // disk: a rating's 12 bytes twice over for each of its 6 bytes of text at the least.
    let streamed = LoadOptions { max_bytes: load.max_bytes.or_else(|| crate::resources::available_disk(dir).map(|free| free / 4)), ..load.clone() };
    let (report, summary, counts) = spill_input(input, &streamed, spill.as_file(), &fail)?;
    let (users, items, ratings) = (report.users.len(), report.items.len(), report.ratings);
    let grid = grid_for(ratings, users, items, settings)?;
    let axes = (Axis::new(users, grid.user_blocks, settings.seed, 11), Axis::new(items, grid.item_blocks, settings.seed, 12));
    let grid = GridSize { user_blocks: axes.0.blocks(), item_blocks: axes.1.blocks() };
    let tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".partial").tempfile_in(dir).map_err(fail)?;
    let file = tmp.as_file();
    file.write_all_at(MAGIC, 0).map_err(fail)?;
    let starts = lay_out(&spill, file, &axes, settings, &fail)?;
    drop(spill);
    let crcs = order_blocks(file, &starts, settings, &fail)?;
    let counts = counts.sized(users, items);
    let mut metadata = Vec::with_capacity(8 * starts.len() + 4 * crcs.len() + 12 * (users + items));
    starts.iter().for_each(|s| metadata.extend_from_slice(&s.to_le_bytes()));
    crcs.iter().for_each(|c| metadata.extend_from_slice(&c.to_le_bytes()));
    for ids in [&report.users, &report.items] {
        ids.externals().iter().for_each(|id| metadata.extend_from_slice(&id.to_le_bytes()));
    }
    counts.users.iter().chain(&counts.items).for_each(|c| metadata.extend_from_slice(&c.to_le_bytes()));
    let labels = [&report.users, &report.items].map(IdMap::labels_as_bytes).concat();
    metadata.extend_from_slice(&labels);
    let found = Header {
        version: VERSION,
        input: identity.clone(),
        skip_bad_lines: false,
        format: String::new(),
        user_blocks: grid.user_blocks,
        item_blocks: grid.item_blocks,
        by_user: false,
        seed: 0,
        users,
        items,
        ratings,
        skipped_lines: report.skipped_lines,
        events: report.events,
        sum: summary.sum,
        sum_squares: summary.sum_squares,
        min: summary.lowest,
        max: summary.highest,
        values: summary.values().to_vec(),
        labels_bytes: labels.len() as u64,
        metadata_crc: crc32fast::hash(&metadata),
    };
    let header = Header { metadata_crc: found.metadata_crc, ..expected_header(identity, load, &CacheSettings { grid: Some(grid), ..settings.clone() }, &found) };
    write_tail(file, DATA_AT + ratings * RECORD, &metadata, &header, &fail)?;
    interrupted()?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// An error when Ctrl-C was pressed during the build: the temporary files are then removed as
/// the build unwinds, and the run ends.
fn interrupted() -> Result<()> {
    if crate::interrupt::requested() {
        return Err(Error::Data("interrupted (Ctrl-C) while writing the block cache; its partial files are removed".into()));
    }
    Ok(())
}

/// Removes the partial files of builds of `name` in `dir` that no process is writing any more
/// (a build killed by a signal that could not be caught leaves them: 180–270 MB each on a large
/// input).
fn remove_abandoned(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !(file_name.starts_with(&prefix) && file_name.ends_with(".partial")) {
            continue;
        }
        let idle = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
        if idle.is_some_and(|d| d > ABANDONED_AFTER) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Reads `input` once, piece by piece, into `spill` as dense ratings; returns what the loader
/// said and the ratings' summary and row counts.
fn spill_input(input: &Path, load: &LoadOptions, spill: &File, fail: &dyn Fn(std::io::Error) -> Error) -> Result<(StreamReport, RatingSummary, RowCounts)> {
    let (mut summary, mut counts) = (RatingSummary::default(), RowCounts::default());
    let mut writer = BufWriter::with_capacity(1 << 20, spill);
    let report = stream_ratings(input, load, |ratings| {
        interrupted()?;
        summary.add(ratings);
        counts.add(ratings);
        writer.write_all(bytemuck::cast_slice(ratings)).map_err(fail)
    })?;
    writer.flush().map_err(fail)?;
    Ok((report, summary, counts))
}

/// Calls `f` with the spilled ratings, a chunk at a time.
fn each_chunk(spill: &tempfile::NamedTempFile, fail: &dyn Fn(std::io::Error) -> Error, f: &mut dyn FnMut(&[Rating]) -> Result<()>) -> Result<()> {
    let mut reader = spill.reopen().map(|f| BufReader::with_capacity(1 << 20, f)).map_err(fail)?;
    let mut chunk = vec![Rating { user: 0, item: 0, value: 0.0 }; 1 << 16];
    loop {
        interrupted()?;
        let capacity = std::mem::size_of_val(&chunk[..]);
        let mut filled = 0;
        {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut chunk);
            while filled < bytes.len() {
                match reader.read(&mut bytes[filled..]).map_err(fail)? {
                    0 => break,
                    n => filled += n,
                }
            }
        }
        let n = filled / RECORD as usize;
        if n > 0 {
            f(&chunk[..n])?;
        }
        if filled < capacity {
            return Ok(());
        }
    }
}

/// Counts each block's ratings, then writes each rating at its block's next slot in `file`
/// (naming positions); returns where each block starts (with the end after the last).
fn lay_out(spill: &tempfile::NamedTempFile, file: &File, (users, items): &(Axis, Axis), settings: &CacheSettings, fail: &dyn Fn(std::io::Error) -> Error) -> Result<Vec<u64>> {
    let columns = items.blocks();
    let blocks = users.blocks() * columns;
    let place = |r: &Rating| -> (usize, Rating) {
        let (u, i) = (users.position(r.user), items.position(r.item));
        (users.block_at(u) * columns + items.block_at(i), Rating { user: u, item: i, value: r.value })
    };
    let mut starts = vec![0u64; blocks + 1];
    each_chunk(spill, fail, &mut |chunk| {
        chunk.iter().for_each(|r| starts[place(r).0 + 1] += 1);
        Ok(())
    })?;
    for b in 0..blocks {
        starts[b + 1] += starts[b];
    }
    let buffered = ((settings.memory / 4 / blocks as u64 / RECORD) as usize).clamp(256, 1 << 16);
    let mut pending: Vec<Vec<Rating>> = vec![Vec::new(); blocks];
    let mut written = starts.clone();
    let flush = |b: usize, pending: &mut Vec<Rating>, written: &mut [u64]| -> Result<()> {
        file.write_all_at(bytemuck::cast_slice(pending), DATA_AT + written[b] * RECORD).map_err(fail)?;
        written[b] += pending.len() as u64;
        pending.clear();
        Ok(())
    };
    each_chunk(spill, fail, &mut |chunk| {
        for r in chunk {
            let (b, placed) = place(r);
            pending[b].push(placed);
            if pending[b].len() >= buffered {
                flush(b, &mut pending[b], &mut written)?;
            }
        }
        Ok(())
    })?;
    for (b, block) in pending.iter_mut().enumerate() {
        flush(b, block, &mut written)?;
    }
    Ok(starts)
}

/// Orders each block as the in-memory schedule would (shuffled; by user when several threads
/// read it), and returns each block's CRC-32.
fn order_blocks(file: &File, starts: &[u64], settings: &CacheSettings, fail: &dyn Fn(std::io::Error) -> Error) -> Result<Vec<u32>> {
    let mut crcs = Vec::with_capacity(starts.len() - 1);
    let mut block: Vec<Rating> = Vec::new();
    for (b, w) in starts.windows(2).enumerate() {
        interrupted()?;
        block.clear();
        block.resize((w[1] - w[0]) as usize, Rating { user: 0, item: 0, value: 0.0 });
        let at = DATA_AT + w[0] * RECORD;
        file.read_exact_at(bytemuck::cast_slice_mut(&mut block), at).map_err(fail)?;
        block.shuffle(&mut part_rng(settings.seed, 14, b));
        if settings.order == Order::ByUser {
            // Stable: each user's items keep the shuffled order.
            block.sort_by_key(|r| r.user);
            crate::grid::take_turns(&mut block);
        }
        file.write_all_at(bytemuck::cast_slice(&block), at).map_err(fail)?;
        crcs.push(crc32fast::hash(bytemuck::cast_slice(&block)));
    }
    Ok(crcs)
}

/// Writes the metadata, the JSON header, its length and the magic after the ratings (from
/// `at`), and syncs the file.
fn write_tail(file: &File, mut at: u64, metadata: &[u8], header: &Header, fail: &dyn Fn(std::io::Error) -> Error) -> Result<()> {
    let json = serde_json::to_vec(header).map_err(|e| Error::Data(format!("block cache header: {e}")))?;
    for part in [metadata, &json[..], &(json.len() as u64).to_le_bytes()[..], &MAGIC[..]] {
        file.write_all_at(part, at).map_err(fail)?;
        at += part.len() as u64;
    }
    file.sync_all().map_err(fail)
}
