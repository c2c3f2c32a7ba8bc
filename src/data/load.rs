//! Rating files read whole: the format detected from the content, the lines parsed in
//! parallel ([`super::lines`]), every bad line reported with its file and line number, and
//! pairs rated more than once resolved ([`super::duplicates`]). How to read a file is
//! [`super::options`]; a file larger than memory is read piece by piece ([`super::stream`]).

use super::archive::{is_packed, read_unpacked_checking, unread_container};
use super::duplicates::resolve_duplicates;
use super::lines::{line_of_entry, names_a_column, parse_chunk, ChunkResult, Labels, Layout};
use super::options::{Column, Columns, Duplicates, Format, LoadOptions};
use super::text::{binary_record, count_lines, first_data_line, split_chunks, strip_bom, Delimiter, Interner};
use super::{IdMap, Rating, RatingSet};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// A loaded rating file.
#[derive(Debug)]
pub struct Loaded {
    pub ratings: RatingSet,
    /// The format the file was read as (after detection).
    pub format: Format,
    /// Malformed lines skipped under `skip_bad_lines`.
    pub skipped_lines: u64,
    /// With a split column: whether each rating is marked test.
    pub test_marks: Option<Vec<bool>>,
    /// Ratings of a (user, item) pair beyond its first in the file, before `duplicates` acted.
    pub duplicates: usize,
    pub duplicate_policy: Duplicates,
    /// With `positive_threshold`: the threshold, and how many ratings became 1.
    pub binarised: Option<(f32, usize)>,
    /// Lines of a user and an item only, each an event read as 1, and the first one's number.
    pub events: Option<(u64, u64)>,
}

/// Reads and parses a rating file; gzip and single-file zip are unpacked, other archives
/// are named in the error.
pub fn load_ratings(path: &Path, options: LoadOptions) -> Result<Loaded> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::IsDirectory { path: path.into() });
    }
    let check_head = |head: &[u8]| fail_at_the_start(head, path, &options);
    let bytes = read_unpacked_checking(path, super::archive::memory_cap(options.max_bytes), &check_head)?;
    parse_ratings(&bytes, path, options)
}

/// The error a line of `head` (the first bytes of a stream that goes on) gives, if one does:
/// the same lines under the same options fail the same way in the whole stream. Only for text
/// (binary records and packed streams are judged whole), and only a line's fault: what the
/// head alone lacks (ratings, a whole record) is no fault of the stream's.
fn fail_at_the_start(head: &[u8], path: &Path, options: &LoadOptions) -> Result<()> {
    let lines = match head.iter().rposition(|&b| b == b'\n') {
        Some(end) if !head.contains(&0) && !is_packed(head) => &head[..end + 1],
        _ => return Ok(()),
    };
    match parse_ratings(lines, path, options.clone()) {
        Err(e @ Error::Parse { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// Parses rating text already in memory; `path` names it in errors.
pub fn parse_ratings(bytes: &[u8], path: &Path, options: LoadOptions) -> Result<Loaded> {
    let threshold = options.positive_threshold;
    let mut loaded = parse_values(bytes, path, options)?;
    if let Some(t) = threshold {
        loaded.binarised = Some((t, binarise(&mut loaded.ratings.entries, t)));
    }
    Ok(loaded)
}

/// Ratings of `threshold` and above as 1, the rest as 0 (`LoadOptions::positive_threshold`);
/// returns how many became 1.
pub(super) fn binarise(ratings: &mut [Rating], threshold: f32) -> usize {
    let mut positive = 0;
    for r in ratings {
        let is_positive = r.value >= threshold;
        r.value = if is_positive { 1.0 } else { 0.0 };
        positive += is_positive as usize;
    }
    positive
}

/// [`parse_ratings`] before the threshold.
fn parse_values(bytes: &[u8], path: &Path, options: LoadOptions) -> Result<Loaded> {
    check_options(&options)?;
    // A byte-order mark before text (editors on Windows write one) is not part of the first line.
    let bytes = strip_bom(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::EmptyFile { path: path.into() });
    }
    if let Some(what) = unread_container(bytes) {
        return Err(Error::Format { path: path.into(), message: format!("this is {what}") });
    }
    let format = match options.format {
        Format::Auto => detect_format(bytes, path, &options)?,
        f => f,
    };
    refuse_columns(format, path, &options)?;
    if format == Format::Binary {
        // Detection may find binary records where the user expected text with a split column.
        if options.split_column.is_some() {
            return Err(Error::InvalidParameter(format!(
                "--split-column applies to delimited text with one rating per line, and {} holds binary records",
                path.display()
            )));
        }
        let mut loaded = parse_binary(bytes, path, options.skip_bad_lines)?;
        let locate = |ordinal: usize| format!("record {}", ordinal + 1);
        loaded.duplicates = resolve_duplicates(&mut loaded.ratings, &mut None, options.duplicates, path, locate)?;
        loaded.duplicate_policy = options.duplicates;
        return Ok(loaded);
    }
    if format == Format::Dense {
        let (ratings, skipped_lines) = super::dense::parse_dense(bytes, path, options.missing.as_deref(), options.skip_columns, options.skip_bad_lines)?;
        return Ok(Loaded { ratings, format, skipped_lines, test_marks: None, duplicates: 0, duplicate_policy: Duplicates::Keep, binarised: None, events: None });
    }
    let mut layout = Layout::for_file(format, bytes, path, options.columns.as_ref())?;
    if let Some(column) = options.split_column {
        layout.mark_split(column, format)?;
    }
    parse_text(bytes, path, &layout, &options, format)
}

/// Delimited text and Matrix Market files: every line parsed in parallel, the first bad one
/// reported by its file line, then the ids interned in file order.
fn parse_text(bytes: &[u8], path: &Path, layout: &Layout, options: &LoadOptions, format: Format) -> Result<Loaded> {
    let body = &bytes[layout.body_start..];
    let chunks = split_chunks(body);
    let mut parsed: Vec<ChunkResult> = chunks.par_iter().map(|&(start, end)| parse_chunk(&body[start..end], layout, options.skip_bad_lines)).collect();
    let (mut total, mut skipped) = (0usize, 0u64);
    let mut events: Option<(u64, u64)> = None;
    let line_of = |ci: usize, local_line: u64| count_lines(&bytes[..layout.body_start + chunks[ci].0]) + local_line + 1;
    for (ci, chunk) in parsed.iter().enumerate() {
        if let Some((local_line, message)) = &chunk.error {
            return Err(Error::Parse { path: path.into(), line: line_of(ci, *local_line), message: message.clone() });
        }
        if let Some(first) = chunk.first_event {
            events.get_or_insert_with(|| (0, line_of(ci, first))).0 += chunk.events;
        }
        total += chunk.triplets.len();
        skipped += chunk.skipped;
    }
    if total == 0 {
        let message = if skipped > 0 { format!("no valid ratings: all {skipped} data lines were malformed") } else { "no ratings after the header".into() };
        return Err(Error::Format { path: path.into(), message });
    }
    if let Some(size) = layout.mtx_size {
        check_matrix_market(&parsed, total, size, options.skip_bad_lines).map_err(|message| Error::Format { path: path.into(), message })?;
    }
    let (max_user, max_item) = parsed
        .par_iter()
        .flat_map_iter(|c| c.triplets.iter())
        .fold(|| (0u64, 0u64), |(u, i), t| (u.max(t.0), i.max(t.1)))
        .reduce(|| (0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    let (mut users, mut items) = (Interner::new(max_user, total), Interner::new(max_item, total));
    let mut labels = Labels::default();
    let mut entries = Vec::with_capacity(total);
    let mut marks = layout.split_col.map(|_| Vec::with_capacity(total));
    for (ci, chunk) in parsed.iter_mut().enumerate() {
        if let Some(marks) = &mut marks {
            marks.extend(chunk.triplets.iter().map(|t| t.3));
        }
        let sides = [&mut users, &mut items];
        labels.intern(chunk, &body[chunks[ci].0..chunks[ci].1], layout, |side, key| sides[side].intern_new(key), &mut entries);
    }
    if let Some((ci, (local, message))) = labels.first_clash(&parsed, body, &chunks, layout, &entries) {
        return Err(Error::Parse { path: path.into(), line: line_of(ci, local), message });
    }
    let labelled = |map: IdMap, side| map.with_labels(labels.side(side)).map_err(|message| Error::Format { path: path.into(), message });
    let mut ratings = RatingSet { entries, users: labelled(users.finish(), 0)?, items: labelled(items.finish(), 1)? };
    let locate = |ordinal: usize| format!("line {}", line_of_entry(bytes, layout, ordinal));
    let duplicates = resolve_duplicates(&mut ratings, &mut marks, options.duplicates, path, locate)?;
    Ok(Loaded { ratings, format, skipped_lines: skipped, test_marks: marks, duplicates, duplicate_policy: options.duplicates, binarised: None, events })
}

/// A Matrix Market file's entries against its size line: as many as declared (unless bad lines
/// were skipped), each within the declared matrix.
fn check_matrix_market(parsed: &[ChunkResult], total: usize, (m, n, nnz): (u64, u64, u64), skip_bad_lines: bool) -> std::result::Result<(), String> {
    if !skip_bad_lines && total as u64 != nnz {
        return Err(format!("Matrix Market header declares {nnz} entries but the file has {total} (truncated?)"));
    }
    for c in parsed {
        if let Some(&(u, i, _, _)) = c.triplets.iter().find(|t| t.0 == 0 || t.0 > m || t.1 == 0 || t.1 > n) {
            return Err(format!("entry ({u}, {i}) lies outside the declared {m} x {n} matrix (indices are 1-based)"));
        }
    }
    Ok(())
}

/// Flags that belong to one format, given with another, are errors rather than ignored.
pub(super) fn check_options(options: &LoadOptions) -> Result<()> {
    if options.positive_threshold.is_some_and(|t| !t.is_finite()) {
        return Err(Error::setting("--positive-threshold", "positive_threshold", options.positive_threshold.unwrap_or(0.0), "must be a finite number"));
    }
    let dense = options.format == Format::Dense;
    if !dense && options.missing.is_some() {
        return Err(Error::InvalidParameter("--missing applies to --format dense".into()));
    }
    if !dense && options.skip_columns > 0 {
        return Err(Error::InvalidParameter("--skip-columns applies to --format dense".into()));
    }
    match options.split_column {
        Some(0) => Err(Error::InvalidParameter("--split-column counts columns from 1".into())),
        Some(_) if dense || options.format == Format::Binary => {
            Err(Error::InvalidParameter("--split-column applies to delimited text with one rating per line".into()))
        }
        _ => Ok(()),
    }
}

impl RatingSet {
    /// From columns of external ids and ratings (e.g. NumPy arrays), interning ids in order of
    /// first appearance exactly as the file loaders do, so the same ratings in the same order
    /// train the same model however they arrive. `what` names the data in errors.
    pub fn from_columns(users: &[u64], items: &[u64], ratings: &[f32], what: &str) -> Result<RatingSet> {
        if users.len() != items.len() || users.len() != ratings.len() {
            return Err(Error::Data(format!(
                "{what}: the user, item and rating columns differ in length ({}, {} and {})",
                users.len(),
                items.len(),
                ratings.len()
            )));
        }
        if ratings.is_empty() {
            return Err(Error::Data(format!("{what}: no ratings")));
        }
        if let Some(at) = ratings.iter().position(|r| !r.is_finite()) {
            return Err(Error::Data(format!("{what}: rating {} at row {at} is not a finite number", ratings[at])));
        }
        let max = |ids: &[u64]| ids.par_iter().copied().max().unwrap_or(0);
        let (mut user_ids, mut item_ids) = (Interner::new(max(users), users.len()), Interner::new(max(items), items.len()));
        let entries = (0..users.len())
            .map(|k| Rating { user: user_ids.intern(users[k]), item: item_ids.intern(items[k]), value: ratings[k] })
            .collect();
        Ok(RatingSet { entries, users: user_ids.finish(), items: item_ids.finish() })
    }
}

/// Reads cuMF_SGD's binary records; "line" numbers in errors are record numbers.
fn parse_binary(bytes: &[u8], path: &Path, skip_bad: bool) -> Result<Loaded> {
    const RECORD: usize = 12;
    if !bytes.len().is_multiple_of(RECORD) {
        return Err(Error::Format {
            path: path.into(),
            message: format!(
                "binary ratings file of {} bytes is not a whole number of 12-byte records {{i32 user, i32 item, f32 rating}} (truncated?)",
                bytes.len()
            ),
        });
    }
    let mut ratings = RatingSet::default();
    ratings.entries.reserve(bytes.len() / RECORD);
    let mut skipped = 0u64;
    let max = |id: fn((i32, i32, f32)) -> i32| bytes.chunks_exact(RECORD).map(|b| id(binary_record(b)).max(0) as u64).max().unwrap_or(0);
    let (mut users, mut items) = (Interner::new(max(|r| r.0), bytes.len() / RECORD), Interner::new(max(|r| r.1), bytes.len() / RECORD));
    for (n, b) in bytes.chunks_exact(RECORD).enumerate() {
        let (u, i, r) = binary_record(b);
        let fault = if u < 0 {
            Some(format!("bad user id {u}: expected a non-negative integer"))
        } else if i < 0 {
            Some(format!("bad item id {i}: expected a non-negative integer"))
        } else if !r.is_finite() {
            Some(format!("rating {r} is not a finite number"))
        } else {
            None
        };
        match fault {
            None => ratings.entries.push(Rating { user: users.intern(u as u64), item: items.intern(i as u64), value: r }),
            Some(_) if skip_bad => skipped += 1,
            Some(message) => return Err(Error::Parse { path: path.into(), line: n as u64 + 1, message: format!("record {}: {message}", n + 1) }),
        }
    }
    if ratings.entries.is_empty() {
        return Err(Error::Format { path: path.into(), message: "no valid ratings in the binary file".into() });
    }
    ratings.users = users.finish();
    ratings.items = items.finish();
    Ok(Loaded { ratings, format: Format::Binary, skipped_lines: skipped, test_marks: None, duplicates: 0, duplicate_policy: Duplicates::Keep, binarised: None, events: None })
}

/// Records checked before a file without a known extension is taken as binary ratings.
const PLAUSIBLE_RECORDS: usize = 1024;
/// Larger ratings are taken as a sign that the bytes are not rating records.
const PLAUSIBLE_RATING: f32 = 1e6;

/// Why the start of `bytes` is not cuMF_SGD's records, if it is not.
fn implausible_binary(bytes: &[u8]) -> Option<String> {
    if !bytes.len().is_multiple_of(12) {
        return Some(format!("its {} bytes are not a whole number of 12-byte records", bytes.len()));
    }
    let probe = &bytes[..bytes.len().min(12 * PLAUSIBLE_RECORDS)];
    if probe.len() >= 12 * PLAUSIBLE_RECORDS && probe.iter().all(|&b| b == 0) {
        return Some(format!("its first {PLAUSIBLE_RECORDS} records are all zero bytes (a device such as /dev/zero?)"));
    }
    for (n, b) in bytes.chunks_exact(12).take(PLAUSIBLE_RECORDS).enumerate() {
        let (u, i, r) = binary_record(b);
        if u < 0 || i < 0 || !r.is_finite() || r.abs() > PLAUSIBLE_RATING {
            return Some(format!("record {} would be user {u}, item {i}, rating {r}", n + 1));
        }
    }
    None
}

/// `--columns` where the format fixes where the ids are (binary records, a dense grid,
/// Matrix Market's entries) is an error, not ignored.
pub(super) fn refuse_columns(format: Format, path: &Path, options: &LoadOptions) -> Result<()> {
    match &options.columns {
        Some(_) if matches!(format, Format::Mtx | Format::Dense | Format::Binary) => {
            Err(Error::InvalidParameter(format!("--columns applies to delimited text, and {} is read as {}", path.display(), crate::choice::Choice::name(format))))
        }
        _ => Ok(()),
    }
}

/// Guesses the format from the first bytes of (decompressed) content.
pub(super) fn detect_format(bytes: &[u8], path: &Path, options: &LoadOptions) -> Result<Format> {
    // Text rating files never hold a NUL byte; binary records of small ids always do. The
    // binary format is assumed only for its extension or records that look like ratings.
    if bytes[..bytes.len().min(4096)].contains(&0) {
        let packed = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz") || e.eq_ignore_ascii_case("zip"));
        let named = if packed { Path::new(path.file_stem().unwrap_or_default()) } else { path };
        let known_extension = named.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin"));
        if known_extension {
            return Ok(Format::Binary);
        }
        return match implausible_binary(bytes) {
            None => Ok(Format::Binary),
            Some(why) => Err(Error::Format {
                path: path.into(),
                message: format!(
                    "not a rating file: it holds NUL bytes, so it is not text, and it is not cuMF_SGD's binary records ({why}); convert it to text, or pass --format binary if it really is such records"
                ),
            }),
        };
    }
    Ok(detect_text_format(bytes, options.split_column, options.columns.as_ref()))
}

/// A text format from the first data line. A header has a word past the user and item columns
/// (ids may be labels, so a word there is no sign), or names one of them; a split column's
/// words (train, test) are not a sign of one. With `--columns`, a word in the rating column is
/// the sign (any other column may hold text), and names given there need a header.
fn detect_text_format(bytes: &[u8], split_column: Option<usize>, columns: Option<&Columns>) -> Format {
    if bytes.starts_with(b"%%MatrixMarket") {
        return Format::Mtx;
    }
    let first = first_data_line(bytes);
    let delim = Delimiter::of_line(first);
    let fields: Vec<&str> = delim.split(first).collect();
    let looks_like_header = match columns {
        Some(Columns { user, item, rating }) => {
            // A line of numbers is data whatever the columns are called: no header to name them.
            let numbers = fields.iter().all(|f| f.trim().trim_matches('"').parse::<f64>().is_ok());
            let named = !numbers && [Some(user), Some(item), rating.as_ref()].into_iter().flatten().any(|c| matches!(c, Column::Name(_)));
            let word_rating = matches!(rating, Some(Column::Number(r)) if fields.get(r - 1).is_some_and(|f| f.trim().trim_matches('"').parse::<f64>().is_err()));
            named || word_rating || fields.iter().any(|f| names_a_column(f))
        }
        None => fields.iter().enumerate().any(|(c, f)| Some(c + 1) != split_column && (names_a_column(f) || (c >= 2 && f.trim().parse::<f64>().is_err()))),
    };
    if looks_like_header {
        return Format::Csv;
    }
    match delim {
        Delimiter::DoubleColon => Format::Dat,
        Delimiter::Tab => Format::Tab,
        Delimiter::Comma | Delimiter::Semicolon => Format::Comma,
        _ => Format::Space,
    }
}

impl Loaded {
    /// A one-line description for logs, e.g. "100000 ratings (943 users, 1682 items), tab format".
    pub fn summary(&self, path: &Path) -> String {
        let r = &self.ratings;
        let mut s = format!(
            "{}: {} ratings ({} users x {} items), {:?} format",
            path.display(),
            r.len(),
            r.users.len(),
            r.items.len(),
            self.format
        );
        if self.skipped_lines > 0 {
            s.push_str(&format!(", {} malformed lines skipped", self.skipped_lines));
        }
        if self.duplicates > 0 {
            let done = match self.duplicate_policy {
                Duplicates::Keep => "all kept (--duplicates last|mean|sum|error to resolve them)",
                Duplicates::Last => "the last of each kept",
                Duplicates::Mean => "each pair's ratings averaged",
                Duplicates::Sum => "each pair's values summed",
                Duplicates::Error => "",
            };
            s.push_str(&format!(", {} ratings repeat a (user, item) pair: {done}", self.duplicates));
        }
        if let Some((threshold, positive)) = self.binarised {
            s.push_str(&format!("; ratings of {threshold} and above read as 1 ({positive}), the rest as 0 ({})", r.len() - positive));
        }
        if let Some((events, line)) = self.events {
            s.push_str(&format!("; {events} lines of a user and an item only (the first at line {line}), each read as one event"));
        }
        if let Some(marks) = &self.test_marks {
            let tests = marks.iter().filter(|&&t| t).count();
            s.push_str(&format!("; the split column marks {} train and {tests} test", marks.len() - tests));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_duplicate_policy_resolves_repeated_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plays.tsv");
        std::fs::write(&path, "1\t1\t5\n1\t2\t3\n2\t1\t4\n1\t1\t1\n2\t2\t2\n1\t1\t3\n").unwrap();
        for (policy, entries, value) in [(Duplicates::Keep, 6, None), (Duplicates::Last, 4, Some(3.0)), (Duplicates::Mean, 4, Some(3.0)), (Duplicates::Sum, 4, Some(9.0))] {
            let loaded = load_ratings(&path, LoadOptions { duplicates: policy, ..LoadOptions::default() }).unwrap();
            let set = &loaded.ratings;
            assert_eq!(set.entries.len(), entries, "{policy:?}");
            let of_pair: Vec<f32> = set.entries.iter().filter(|r| (set.users.external_id(r.user), set.items.external_id(r.item)) == (1, 1)).map(|r| r.value).collect();
            if let Some(value) = value {
                assert_eq!(of_pair, vec![value], "{policy:?}");
            }
            assert_eq!(loaded.duplicates, 2, "{policy:?}");
        }
    }
}
