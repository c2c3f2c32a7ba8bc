//! Rating-file loaders: format detected from the content, parsed in parallel, every bad line
//! reported with its file and line number.

use super::archive::{is_packed, read_unpacked, read_unpacked_checking, unread_container};
use super::text::strip_bom;
use super::text::{binary_record, count_lines, decimal_comma_hint, field_ranges, first_data_line, quoted, split_chunks, Delimiter, Interner, MAX_LINE};
use super::{labels_clash, ExternalId, IdMap, IdToken, Rating, RatingSet, LABEL_BIT};
use rustc_hash::FxHashMap;
use std::hash::Hasher;
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// The rating-file formats gpumf reads. Gzip is detected separately, under any of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detect from the content (the default).
    #[default]
    Auto,
    /// `user<TAB>item<TAB>rating[<TAB>timestamp]`, e.g. MovieLens 100k `u.data`.
    Tab,
    /// `user,item,rating[,timestamp]` without a header line.
    Comma,
    /// `user item rating [timestamp]` separated by spaces (LIBMF's text format).
    Space,
    /// `user::item::rating::timestamp`, MovieLens 1M/10M `ratings.dat`.
    Dat,
    /// Delimited text with a header line naming the columns (MovieLens `ratings.csv`).
    Csv,
    /// Matrix Market coordinate format (`.mtx`), 1-based row and column indices.
    Mtx,
    /// cuMF_SGD's binary records {i32 user, i32 item, f32 rating}, 12 bytes each, no header.
    Binary,
    /// A dense matrix: one line per user, one column per item, a marker for missing entries
    /// (`--missing`); ids are the row and column numbers, from 1.
    Dense,
}

/// What to do with a (user, item) pair rated more than once in one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Duplicates {
    /// Keep every rating (each is trained on), and count them.
    #[default]
    Keep,
    /// Keep the one that comes last in the file.
    Last,
    /// Keep one rating, the mean of them all.
    Mean,
    /// Keep one entry, the sum of them all: events (plays, clicks) repeated in a log count up.
    Sum,
    /// Stop with the lines of the first repeated pair.
    Error,
}

impl crate::choice::Choice for Format {
    const WHAT: &'static str = "format";
    const ALL: &'static [(Format, &'static str, &'static str)] = &[
        (Format::Auto, "auto", "Detect from the content (the default)"),
        (Format::Tab, "tab", "user<TAB>item<TAB>rating[<TAB>timestamp], e.g. MovieLens 100k u.data"),
        (Format::Comma, "comma", "user,item,rating[,timestamp] without a header line"),
        (Format::Space, "space", "user item rating [timestamp] separated by spaces (LIBMF's text format)"),
        (Format::Dat, "dat", "user::item::rating::timestamp, MovieLens 1M/10M ratings.dat"),
        (Format::Csv, "csv", "Delimited text with a header line naming the columns (MovieLens ratings.csv)"),
        (Format::Mtx, "mtx", "Matrix Market coordinate format (.mtx), 1-based row and column indices"),
        (Format::Binary, "binary", "cuMF_SGD's binary records {i32 user, i32 item, f32 rating}, 12 bytes each"),
        (Format::Dense, "dense", "A dense matrix: one line per user, one column per item, --missing marks gaps"),
    ];
}

impl crate::choice::Choice for Duplicates {
    const WHAT: &'static str = "duplicates policy";
    const ALL: &'static [(Duplicates, &'static str, &'static str)] = &[
        (Duplicates::Keep, "keep", "Keep every rating (each is trained on), and count them"),
        (Duplicates::Last, "last", "Keep the one that comes last in the file"),
        (Duplicates::Mean, "mean", "Keep one rating, the mean of them all"),
        (Duplicates::Sum, "sum", "Keep one entry, the sum of them all (events such as plays count up)"),
        (Duplicates::Error, "error", "Stop with the lines of the first repeated pair"),
    ];
}

/// A column of a delimited file: its number (from 1) or its header's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Number(usize),
    Name(String),
}

/// Which columns hold the user, the item and (unless the lines are events) the rating
/// (`--columns 1,2,4`, or by the header's names: `--columns User-ID,ISBN,Book-Rating`), for
/// files laid out otherwise (Last.fm's plays, Book-Crossing's ratings). Further columns are
/// ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Columns {
    pub user: Column,
    pub item: Column,
    pub rating: Option<Column>,
}

impl std::str::FromStr for Columns {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Columns, String> {
        let column = |t: &str| match t.trim().parse::<usize>() {
            Ok(0) => Err("columns are numbered from 1".to_string()),
            Ok(n) if n > MAX_FIELDS => Err(format!("column {n}: lines of more than {MAX_FIELDS} fields are not read")),
            Ok(n) => Ok(Column::Number(n)),
            Err(_) if t.trim().is_empty() => Err("a column is empty".to_string()),
            Err(_) => Ok(Column::Name(t.trim().to_string())),
        };
        let parts: Vec<&str> = text.split(',').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(format!("{text:?}: expected USER,ITEM[,RATING], each a column's number (from 1) or its header's name"));
        }
        let columns = Columns { user: column(parts[0])?, item: column(parts[1])?, rating: parts.get(2).map(|t| column(t)).transpose()? };
        let all = [Some(&columns.user), Some(&columns.item), columns.rating.as_ref()];
        if all.iter().flatten().enumerate().any(|(a, x)| all.iter().flatten().skip(a + 1).any(|y| x == y)) {
            return Err(format!("{text:?}: a column is named twice"));
        }
        Ok(columns)
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Number(n) => write!(f, "{n}"),
            Column::Name(name) => f.write_str(name),
        }
    }
}

impl std::fmt::Display for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.user, self.item)?;
        self.rating.iter().try_for_each(|r| write!(f, ",{r}"))
    }
}

/// How to read a rating file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub format: Format,
    /// Skip malformed lines (and count them) instead of failing on the first.
    pub skip_bad_lines: bool,
    /// `--format dense`: the text that marks a missing entry (empty fields always do).
    pub missing: Option<String>,
    /// `--format dense`: leading columns that are not ratings (e.g. a count per user).
    pub skip_columns: usize,
    /// The column (from 1) that marks each rating `train` or `test` (or 0 or 1).
    pub split_column: Option<usize>,
    pub duplicates: Duplicates,
    /// Ratings of this value and above are read as 1, the rest as 0: explicit ratings as the
    /// labels of a binary loss (`--positive-threshold 4`: 4 and 5 stars are liked), or as the
    /// events of a one-class loss (those read as 0 are no event).
    pub positive_threshold: Option<f32>,
    /// The third column counts events (plays, clicks) or weighs them, for a one-class loss.
    pub counts: bool,
    /// Where the user, item and rating are, when not where the format puts them.
    pub columns: Option<Columns>,
    /// The most bytes of the file a loader reads: `None` is the memory available when the file
    /// is read whole (`--memory` when given), and, streamed, a regular file's size and no limit
    /// for a pipe. A device that goes on (/dev/zero) is an error at this many bytes.
    pub max_bytes: Option<u64>,
}

impl LoadOptions {
    /// Whether a file read with these options must hold events alone (every value 1) for a
    /// one-class loss: without `--positive-threshold` or `--counts` its values are kept as
    /// written, and star ratings would be taken for weights.
    pub fn needs_events(&self, one_class: bool) -> bool {
        one_class && self.positive_threshold.is_none() && !self.counts
    }
}

/// Checks a training file's values, as the loader read them, against the loss it trains (named
/// `loss`; `one_class` whether it is one), whether the file was loaded whole, read piece by
/// piece, or is a block cache: `--counts` is for a one-class loss; a file of events (`events`:
/// how many lines held a user and an item only, and the first one's line) needs one; and a
/// one-class loss without `--positive-threshold` or `--counts` needs events alone, which
/// `not_event` is asked about (what it holds that is not 1, as "the value 4 (user 1, item 1)").
pub fn check_values(path: &Path, options: &LoadOptions, events: Option<(u64, u64)>, not_event: impl FnOnce() -> Option<String>, one_class: bool, loss: &str) -> Result<()> {
    if options.counts && !one_class {
        return Err(Error::InvalidParameter(format!("--counts reads a column of event counts for a one-class loss (--loss ials or bpr), not --loss {loss}")));
    }
    if let (false, Some((lines, line))) = (one_class, events) {
        let message = format!("a user and an item but no rating ({lines} such lines): a file of events (plays, clicks) trains with a one-class loss (--loss ials), not --loss {loss}");
        return Err(Error::Parse { path: path.into(), line, message });
    }
    if let Some(held) = options.needs_events(one_class).then(not_event).flatten() {
        return Err(Error::Data(format!(
            "{}: holds {held}, but --loss {loss} trains on events: give --positive-threshold T to read ratings of T and above as events, or --counts if the column counts or weighs events (plays, clicks)",
            path.display()
        )));
    }
    Ok(())
}

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
fn binarise(ratings: &mut [Rating], threshold: f32) -> usize {
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

impl Layout {
    /// Reads `column` (from 1) as the split column that marks each rating train or test.
    fn mark_split(&mut self, column: usize, format: Format) -> Result<()> {
        if format == Format::Mtx {
            return Err(Error::InvalidParameter("--split-column applies to delimited text, not Matrix Market files".into()));
        }
        if format == Format::Csv && column > self.max_fields {
            return Err(Error::InvalidParameter(format!("--split-column {column}: the header names only {} columns", self.max_fields)));
        }
        if [self.user_col, self.item_col, self.rating_col].contains(&(column - 1)) {
            return Err(Error::InvalidParameter(format!("--split-column {column} is the user, item or rating column")));
        }
        self.split_col = Some(column - 1);
        self.min_fields = self.min_fields.max(column);
        self.max_fields = self.max_fields.max(column);
        Ok(())
    }
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
fn check_options(options: &LoadOptions) -> Result<()> {
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

/// The file line of the `ordinal`-th rating read, by the same rules as the parse.
fn line_of_entry(bytes: &[u8], layout: &Layout, ordinal: usize) -> u64 {
    let before = count_lines(&bytes[..layout.body_start]);
    let mut seen = 0;
    for (n, raw) in bytes[layout.body_start..].split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(|b| b.is_ascii_whitespace()) || raw.first() == Some(&layout.comment) || parse_line(raw, layout).is_err() {
            continue;
        }
        if seen == ordinal {
            return before + n as u64 + 1;
        }
        seen += 1;
    }
    0
}

/// Finds (user, item) pairs rated more than once and applies `policy`; returns how many
/// ratings repeated an earlier pair. `locate` names a rating's place in the file by its
/// ordinal, for the error.
pub(super) fn resolve_duplicates(
    ratings: &mut RatingSet,
    marks: &mut Option<Vec<bool>>,
    policy: Duplicates,
    path: &Path,
    locate: impl Fn(usize) -> String,
) -> Result<usize> {
    let groups = repeated_pairs(&ratings.entries, ratings.users.len());
    let repeats: usize = groups.iter().map(|g| g.len() - 1).sum();
    if repeats == 0 {
        return Ok(0);
    }
    let mut remove = vec![false; ratings.entries.len()];
    match policy {
        Duplicates::Keep => return Ok(repeats),
        Duplicates::Error => {
            let first = groups.iter().min_by_key(|g| g[1]).expect("a repeat");
            let (user, item) = ratings.external(&ratings.entries[first[0] as usize]);
            return Err(Error::Data(format!(
                "{}: user {user} rates item {item} more than once ({} and {}); {repeats} such repeats in all (--duplicates keep, last, mean or sum resolves them)",
                path.display(),
                locate(first[0] as usize),
                locate(first[1] as usize)
            )));
        }
        Duplicates::Last => {
            for g in &groups {
                g[..g.len() - 1].iter().for_each(|&i| remove[i as usize] = true);
            }
        }
        Duplicates::Mean | Duplicates::Sum => {
            for g in &groups {
                let sum = g.iter().map(|&i| ratings.entries[i as usize].value as f64).sum::<f64>();
                let value = if policy == Duplicates::Sum { sum } else { sum / g.len() as f64 };
                ratings.entries[g[0] as usize].value = value as f32;
                g[1..].iter().for_each(|&i| remove[i as usize] = true);
            }
        }
    }
    let mut kept = remove.iter().map(|r| !r);
    ratings.entries.retain(|_| kept.next().expect("one flag a rating"));
    if let Some(marks) = marks {
        let mut kept = remove.iter().map(|r| !r);
        marks.retain(|_| kept.next().expect("one flag a rating"));
    }
    Ok(repeats)
}

/// The positions of each pair rated more than once, ascending within a pair. Linear: a
/// counting sort by user, then each user's few ratings sorted by item.
fn repeated_pairs(entries: &[Rating], users: usize) -> Vec<Vec<u32>> {
    // (item << 32 | position): sorting a user's run orders by item, then by file order.
    let (starts, mut keyed) = super::by_user(entries, users, |i, r| (r.item as u64) << 32 | i as u64);
    let mut runs: Vec<&mut [u64]> = Vec::with_capacity(users);
    let mut rest = &mut keyed[..];
    for u in 0..users {
        let (run, tail) = rest.split_at_mut(starts[u + 1] - starts[u]);
        runs.push(run);
        rest = tail;
    }
    runs.into_par_iter()
        .flat_map_iter(|run| {
            run.sort_unstable();
            let mut groups = Vec::new();
            let mut start = 0;
            for end in 1..=run.len() {
                if end == run.len() || run[end] >> 32 != run[start] >> 32 {
                    if end - start > 1 {
                        groups.push(run[start..end].iter().map(|k| *k as u32).collect());
                    }
                    start = end;
                }
            }
            groups
        })
        .collect()
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
fn refuse_columns(format: Format, path: &Path, options: &LoadOptions) -> Result<()> {
    match &options.columns {
        Some(_) if matches!(format, Format::Mtx | Format::Dense | Format::Binary) => {
            Err(Error::InvalidParameter(format!("--columns applies to delimited text, and {} is read as {}", path.display(), crate::choice::Choice::name(format))))
        }
        _ => Ok(()),
    }
}

/// Guesses the format from the first bytes of (decompressed) content.
fn detect_format(bytes: &[u8], path: &Path, options: &LoadOptions) -> Result<Format> {
    // Text rating files never hold a NUL byte; binary records of small ids always do. The
    // binary format is assumed only for its extension or records that look like ratings.
    if bytes[..bytes.len().min(4096)].contains(&0) {
        let known_extension = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("bin"));
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
    if delim == Delimiter::DoubleColon {
        return Format::Dat;
    }
    let fields: Vec<&str> = delim.split(first).collect();
    let looks_like_header = match columns {
        Some(Columns { user, item, rating }) => {
            let named = [Some(user), Some(item), rating.as_ref()].into_iter().flatten().any(|c| matches!(c, Column::Name(_)));
            let word_rating = matches!(rating, Some(Column::Number(r)) if fields.get(r - 1).is_some_and(|f| f.trim().trim_matches('"').parse::<f64>().is_err()));
            named || word_rating || fields.iter().any(|f| names_a_column(f))
        }
        None => fields.iter().enumerate().any(|(c, f)| Some(c + 1) != split_column && (names_a_column(f) || (c >= 2 && f.trim().parse::<f64>().is_err()))),
    };
    if looks_like_header {
        return Format::Csv;
    }
    match delim {
        Delimiter::Tab => Format::Tab,
        Delimiter::Comma | Delimiter::Semicolon => Format::Comma,
        _ => Format::Space,
    }
}

/// Where the columns are and where the data starts, fixed per file.
#[derive(Debug)]
struct Layout {
    delimiter: Delimiter,
    user_col: usize,
    item_col: usize,
    rating_col: usize,
    min_fields: usize,
    max_fields: usize,
    body_start: usize,
    /// Lines starting with this are comments.
    comment: u8,
    /// Matrix Market's declared rows, columns and entries.
    mtx_size: Option<(u64, u64, u64)>,
    /// The column that marks a rating train or test.
    split_col: Option<usize>,
}

impl Layout {
    /// `user item rating [timestamp]` with the given delimiter.
    fn plain(delimiter: Delimiter) -> Layout {
        Layout {
            delimiter,
            user_col: 0,
            item_col: 1,
            rating_col: 2,
            min_fields: 3,
            max_fields: 4,
            body_start: 0,
            comment: b'#',
            mtx_size: None,
            split_col: None,
        }
    }

    fn for_file(format: Format, bytes: &[u8], path: &Path, columns: Option<&Columns>) -> Result<Layout> {
        let mut layout = Self::of_format(format, bytes, path, columns)?;
        // (A header's layout takes them itself, by its names.)
        if let Some(columns) = columns.filter(|_| format != Format::Csv) {
            layout.take_columns(columns, &[], path)?;
        }
        Ok(layout)
    }

    fn of_format(format: Format, bytes: &[u8], path: &Path, columns: Option<&Columns>) -> Result<Layout> {
        // `user item rating [timestamp]` lines, or a file of events whose first line is
        // `user item`: then every line is (a line of two fields among ratings is a fault).
        let plain = |delimiter: Delimiter| {
            let mut fields: [&[u8]; 16] = [&[]; 16];
            let events = split_fields(first_data_line(bytes).as_bytes(), delimiter, &mut fields) == 2;
            let layout = Layout::plain(delimiter);
            if events { Layout { min_fields: 2, max_fields: 2, ..layout } } else { layout }
        };
        Ok(match format {
            Format::Tab => plain(Delimiter::Tab),
            Format::Comma => {
                let semicolon = first_data_line(bytes).contains(';') && !first_data_line(bytes).contains(',');
                plain(if semicolon { Delimiter::Semicolon } else { Delimiter::Comma })
            }
            Format::Space => plain(Delimiter::Whitespace),
            Format::Dat => plain(Delimiter::DoubleColon),
            Format::Csv => Self::with_header(bytes, path, columns)?,
            Format::Mtx => Self::matrix_market(bytes, path)?,
            Format::Auto | Format::Binary | Format::Dense => unreachable!("detected and handled before"),
        })
    }

    fn with_header(bytes: &[u8], path: &Path, columns: Option<&Columns>) -> Result<Layout> {
        let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
        let header = std::str::from_utf8(&bytes[..end])
            .map_err(|_| Error::Parse { path: path.into(), line: 1, message: "header line is not UTF-8 text".into() })?
            .trim_end_matches('\r')
            .trim_start_matches('\u{feff}');
        let delimiter = if header.contains('\t') {
            Delimiter::Tab
        } else if header.contains(',') {
            Delimiter::Comma
        } else if header.contains(';') {
            Delimiter::Semicolon
        } else {
            Delimiter::Whitespace
        };
        let names: Vec<String> =
            delimiter.split(header).map(|f| f.trim().trim_matches('"').to_ascii_lowercase()).collect();
        // A first line that starts with a numeric id is data with a bad field, not a header:
        // report that field's fault.
        if names.first().is_some_and(|n| n.parse::<u64>().is_ok()) {
            if let Err(message) = parse_line(header.as_bytes(), &Layout::plain(delimiter)) {
                return Err(Error::Parse { path: path.into(), line: 1, message });
            }
        }
        let find = |wanted: &[&str], what: &str| {
            names.iter().position(|n| wanted.contains(&n.as_str())).ok_or_else(|| Error::Parse {
                path: path.into(),
                line: 1,
                message: format!(
                    "header has no {what} column (looked for {}; found {}); --columns USER,ITEM[,RATING] names them (by header name or number from 1)",
                    wanted.join(", "),
                    names.join(", ")
                ),
            })
        };
        let body_start = (end + 1).min(bytes.len());
        let layout = Layout { min_fields: names.len(), max_fields: names.len(), body_start, ..Layout::plain(delimiter) };
        if let Some(columns) = columns {
            let mut layout = layout;
            layout.take_columns(columns, &names, path)?;
            return Ok(layout);
        }
        let user_col = find(&USER_COLUMNS, "user")?;
        let item_col = find(&ITEM_COLUMNS, "item")?;
        // A header of a user and an item only: a file of events.
        let rating_col = find(&["rating", "score", "value", "count", "weight", "plays"], "rating").unwrap_or(usize::MAX);
        Ok(Layout { user_col, item_col, rating_col, ..layout })
    }

    /// The user, item and rating columns `columns` names: by number, or by a name of the
    /// header (`names`, lower case; none for a file without one). Any line with the columns
    /// asked for is read, further columns ignored.
    fn take_columns(&mut self, columns: &Columns, names: &[String], path: &Path) -> Result<()> {
        let index = |column: &Column| -> Result<usize> {
            let bad = |why: String| Error::InvalidParameter(format!("--columns {columns}: {why}"));
            match column {
                Column::Number(n) if !names.is_empty() && *n > names.len() => Err(bad(format!("{} has {} columns", path.display(), names.len()))),
                Column::Number(n) => Ok(n - 1),
                Column::Name(_) if names.is_empty() => Err(bad(format!("{} has no header line to name columns; give their numbers (from 1)", path.display()))),
                Column::Name(name) => names.iter().position(|n| n.eq_ignore_ascii_case(name)).ok_or_else(|| bad(format!("the header of {} has no column {name:?} (it has {})", path.display(), names.join(", ")))),
            }
        };
        self.user_col = index(&columns.user)?;
        self.item_col = index(&columns.item)?;
        self.rating_col = columns.rating.as_ref().map(index).transpose()?.unwrap_or(usize::MAX);
        let last = self.user_col.max(self.item_col).max(if self.rating_col == usize::MAX { 0 } else { self.rating_col });
        self.min_fields = last + 1;
        self.max_fields = MAX_FIELDS;
        Ok(())
    }

    fn matrix_market(bytes: &[u8], path: &Path) -> Result<Layout> {
        let text_err = |line, message: String| Error::Parse { path: path.into(), line, message };
        let mut offset = 0usize;
        let mut line_no = 0u64;
        let mut size = None;
        // A 'pattern' matrix lists its entries' places only: events.
        let mut pattern = false;
        while offset < bytes.len() {
            let end = bytes[offset..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| offset + p);
            line_no += 1;
            let line = std::str::from_utf8(&bytes[offset..end]).map_err(|_| text_err(line_no, "not UTF-8 text".into()))?;
            let line = line.trim();
            offset = end + 1;
            if line_no == 1 {
                let banner = line.to_ascii_lowercase();
                let words: Vec<&str> = banner.split_whitespace().collect();
                if words.first() != Some(&"%%matrixmarket") || words.get(1) != Some(&"matrix") {
                    return Err(text_err(1, "expected a '%%MatrixMarket matrix ...' banner".into()));
                }
                if words.get(2) != Some(&"coordinate") {
                    return Err(text_err(1, "only the sparse 'coordinate' Matrix Market format holds ratings".into()));
                }
                pattern = words.get(3) == Some(&"pattern");
                if !pattern && !matches!(words.get(3), Some(&"real") | Some(&"integer")) {
                    return Err(text_err(1, format!("unsupported field type {}: ratings need 'real' or 'integer' (events, 'pattern')", quoted(words.get(3).unwrap_or(&"")))));
                }
                if words.get(4).is_some_and(|s| *s != "general") {
                    return Err(text_err(1, format!("unsupported symmetry {}: only 'general' is read", quoted(words[4]))));
                }
                continue;
            }
            if line.is_empty() || line.starts_with('%') {
                continue;
            }
            let nums: Vec<u64> = line
                .split_whitespace()
                .map(|w| w.parse::<u64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| text_err(line_no, format!("expected the size line 'rows columns entries', found {}", quoted(line))))?;
            if nums.len() != 3 {
                return Err(text_err(line_no, format!("expected the size line 'rows columns entries', found {}", quoted(line))));
            }
            size = Some((nums[0], nums[1], nums[2]));
            break;
        }
        let size = size.ok_or_else(|| Error::Format { path: path.into(), message: "Matrix Market file has no size line".into() })?;
        Ok(Layout {
            delimiter: Delimiter::Whitespace,
            user_col: 0,
            item_col: 1,
            rating_col: 2,
            min_fields: if pattern { 2 } else { 3 },
            max_fields: if pattern { 2 } else { 3 },
            body_start: offset.min(bytes.len()),
            comment: b'%',
            mtx_size: Some(size),
            split_col: None,
        })
    }
}

struct ChunkResult {
    /// User, item (their keys, [`IdToken`]), rating, and whether the split column marks it test.
    triplets: Vec<(u64, u64, f32, bool)>,
    /// From the first rating that names a label on ([`LabelLines`]), where each one's line
    /// starts in the chunk: the labels' texts are read there again, not kept for every line.
    label_lines: LabelLines,
    skipped: u64,
    /// Lines of a user and an item only (an event each, read as 1), and the first of them
    /// (0-based within the chunk).
    events: u64,
    first_event: Option<u64>,
    /// The first bad line (0-based within the chunk) and what was wrong.
    error: Option<(u64, String)>,
}

fn parse_chunk(chunk: &[u8], layout: &Layout, skip_bad: bool) -> ChunkResult {
    let mut out = ChunkResult { triplets: Vec::with_capacity(chunk.len() / 16), label_lines: LabelLines::default(), skipped: 0, events: 0, first_event: None, error: None };
    let mut start = 0;
    for (line_no, raw) in chunk.split(|&b| b == b'\n').enumerate() {
        let at = start;
        start += raw.len() + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > MAX_LINE {
            // Too long to be a rating: an error even with --skip-bad-lines (it is not a file of ratings).
            out.error = Some((line_no as u64, long_line(raw)));
            return out;
        }
        if raw.iter().all(|b| b.is_ascii_whitespace()) || raw.first() == Some(&layout.comment) {
            continue;
        }
        match parse_line(raw, layout) {
            Ok(((user, item), value, test)) => {
                out.label_lines.note(out.triplets.len(), at, [user, item]);
                out.triplets.push((user.key(), item.key(), value.unwrap_or(1.0), test));
                if value.is_none() {
                    out.events += 1;
                    out.first_event.get_or_insert(line_no as u64);
                }
            }
            Err(_) if skip_bad => out.skipped += 1,
            Err(message) => {
                out.error = Some((line_no as u64, message));
                return out;
            }
        }
    }
    out
}

/// Where a chunk's lines start, for its ratings from the first that names a label on (none
/// in a file of numbers): 4 bytes a rating, where a table of each chunk's texts took an entry
/// for almost every line (a chunk meets most of its users for the first time).
#[derive(Default)]
struct LabelLines {
    /// The first such rating, by its place among the chunk's.
    first: Option<usize>,
    starts: Vec<u32>,
    /// Where the chunk's ratings start in the load's list, once interned.
    interned_at: usize,
}

impl LabelLines {
    /// Rating `rating` of the chunk, whose line starts at byte `at`, names `ids`.
    #[inline]
    fn note(&mut self, rating: usize, at: usize, ids: [IdToken; 2]) {
        if self.first.is_none() && ids.iter().any(|id| matches!(id, IdToken::Label(..))) {
            self.first = Some(rating);
        }
        if self.first.is_some() {
            self.starts.push(at as u32);
        }
    }

    /// The line of rating `rating` in `chunk` and where it starts, if it may name a label.
    fn line<'a>(&self, chunk: &'a [u8], rating: usize) -> Option<(&'a [u8], usize)> {
        let at = *self.starts.get(rating.checked_sub(self.first?)?)? as usize;
        let line = chunk[at..].split(|&b| b == b'\n').next().unwrap_or(&[]);
        Some((line.strip_suffix(b"\r").unwrap_or(line), at))
    }
}

/// The texts of labelled ids by key, users' and items', as a load first meets them.
#[derive(Default)]
struct Labels {
    texts: [FxHashMap<u64, Box<[u8]>>; 2],
    /// A second hash of each id's text ([`Labels::check`]; 0 for a number), by its dense index:
    /// the check of a line reads 8 bytes in a list rather than a hash table's entry and the text.
    checks: [Vec<u64>; 2],
}

impl Labels {
    /// A second hash of a label's text, unrelated to its key's FNV-1a: two texts of one key
    /// are told apart by it, without reading the kept text (from memory, for most lines) and
    /// comparing the bytes. Texts alike in both hashes, one chance in 2^64 for a pair that share
    /// a key, would be taken for one.
    #[inline]
    fn check(text: &[u8]) -> u64 {
        let mut hasher = rustc_hash::FxHasher::default();
        hasher.write(text);
        hasher.finish()
    }

    /// A chunk's ratings (`bytes` its text) interned by `intern` (a side's key to its index,
    /// and whether it is new) into `ratings`, keeping the texts of the labels met for the
    /// first time, read again from their lines. The chunk's ratings are dropped, done with.
    fn intern(&mut self, chunk: &mut ChunkResult, bytes: &[u8], layout: &Layout, mut intern: impl FnMut(usize, u64) -> (u32, bool), ratings: &mut Vec<Rating>) {
        chunk.label_lines.interned_at = ratings.len();
        for (j, &(u, i, value, _)) in chunk.triplets.iter().enumerate() {
            let ((user, new_user), (item, new_item)) = (intern(0, u), intern(1, i));
            if (new_user && u >= LABEL_BIT) || (new_item && i >= LABEL_BIT) {
                let ids = chunk.label_lines.line(bytes, j).and_then(|(line, _)| parse_line(line, layout).ok()).expect("a line that parsed").0;
                for (side, (new, id, index)) in [(new_user, ids.0, user), (new_item, ids.1, item)].into_iter().enumerate() {
                    if let (true, IdToken::Label(key, text)) = (new, id) {
                        self.texts[side].insert(key, text.into());
                        self.set_check(side, index, Labels::check(text));
                    }
                }
            }
            ratings.push(Rating { user, item, value });
        }
        chunk.triplets = Vec::new();
    }

    fn set_check(&mut self, side: usize, index: u32, check: u64) {
        let checks = &mut self.checks[side];
        if checks.len() <= index as usize {
            checks.resize(index as usize + 1, 0);
        }
        checks[index as usize] = check;
    }

    /// The first line of `chunk` (0-based, with what is wrong) whose label has a key another
    /// text was first met with: every line checked, in parallel, once the ids are interned
    /// into `ratings`.
    fn clash(&self, chunk: &ChunkResult, bytes: &[u8], layout: &Layout, ratings: &[Rating]) -> Option<(u64, String)> {
        let first = chunk.label_lines.first?;
        let ratings = &ratings[chunk.label_lines.interned_at..];
        (first..first + chunk.label_lines.starts.len()).find_map(|j| {
            let (line, at) = chunk.label_lines.line(bytes, j)?;
            let ids = parse_line(line, layout).ok()?.0;
            let indices = [ratings[j].user, ratings[j].item];
            let clash = [ids.0, ids.1].into_iter().enumerate().find_map(|(side, id)| match id {
                IdToken::Label(key, text) if self.checks[side][indices[side] as usize] != Labels::check(text) => Some(labels_clash(&self.texts[side][&key], text)),
                _ => None,
            })?;
            Some((count_lines(&bytes[..at]), clash))
        })
    }

    /// The first chunk of `parsed` (cut from `body` at `chunks`) with a [clash](Self::clash),
    /// and its line (0-based in the chunk) and fault.
    fn first_clash(&self, parsed: &[ChunkResult], body: &[u8], chunks: &[(usize, usize)], layout: &Layout, ratings: &[Rating]) -> Option<(usize, (u64, String))> {
        parsed.par_iter().enumerate().find_map_first(|(c, chunk)| self.clash(chunk, &body[chunks[c].0..chunks[c].1], layout, ratings).map(|e| (c, e)))
    }

    /// The texts of one side (0 users, 1 items), for [`IdMap::with_labels`].
    fn side(&self, side: usize) -> impl Iterator<Item = (u64, &[u8])> {
        self.texts[side].iter().map(|(&key, text)| (key, &**text))
    }
}

/// A line's user and item, its rating (`None` on a line of a user and an item only: an event)
/// and whether the split column marks it test.
type Line<'a> = ((IdToken<'a>, IdToken<'a>), Option<f32>, bool);

/// The error for a line longer than [`MAX_LINE`]: its length and its start.
fn long_line(raw: &[u8]) -> String {
    let head = String::from_utf8_lossy(&raw[..raw.len().min(200)]);
    format!("a line of {} bytes, longer than any line of ratings (at most {}): {}", raw.len(), crate::resources::human_bytes(MAX_LINE as u64), quoted(&head))
}

/// The most fields of a line that are read (more are counted, not kept).
const MAX_FIELDS: usize = 16;

/// Splits a line into at most `out.len()` fields without allocating; returns the field count
/// (which may exceed `out.len()`: extra fields are counted, not stored).
fn split_fields<'a>(line: &'a [u8], delimiter: Delimiter, out: &mut [&'a [u8]; 16]) -> usize {
    let mut n = 0;
    let mut push = |f: &'a [u8]| {
        if n < out.len() {
            out[n] = f;
        }
        n += 1;
    };
    match delimiter {
        Delimiter::Whitespace => {
            for f in line.split(|b| *b == b' ' || *b == b'\t').filter(|f| !f.is_empty()) {
                push(f);
            }
        }
        Delimiter::DoubleColon => {
            let mut rest = line;
            while let Some(p) = rest.windows(2).position(|w| w == b"::") {
                push(&rest[..p]);
                rest = &rest[p + 2..];
            }
            push(rest);
        }
        d => {
            for f in field_ranges(line, d.symbol().as_bytes()[0]) {
                push(&line[f]);
            }
        }
    }
    n
}

/// A line's ids, rating and split mark ([`Line`]).
fn parse_line<'a>(raw: &'a [u8], layout: &Layout) -> std::result::Result<Line<'a>, String> {
    let text = || String::from_utf8_lossy(raw).into_owned();
    let mut fields: [&[u8]; 16] = [&[]; 16];
    let n = split_fields(raw, layout.delimiter, &mut fields);
    if n < layout.min_fields || n > layout.max_fields {
        let line = text();
        if let Some(other) = layout.delimiter.other_in(&line) {
            return Err(format!(
                "inconsistent delimiter: the file is {}-separated but this line uses {} ({})",
                layout.delimiter.name(),
                other.name(),
                quoted(&line)
            ));
        }
        let expected = if layout.min_fields == layout.max_fields {
            format!("{}", layout.min_fields)
        } else {
            format!("{} to {}", layout.min_fields, layout.max_fields)
        };
        let what = if n < layout.min_fields { "missing field" } else { "too many fields" };
        let hint = if n > 4 && layout.mtx_size.is_none() {
            "; if each line is a user's row of a dense matrix, read it with --format dense --missing VALUE [--skip-columns N]"
        } else {
            ""
        };
        return Err(format!("{what}: expected {expected} {}-separated fields, found {n} ({}){hint}", layout.delimiter.name(), quoted(&line)));
    }
    let ids = (parse_id(fields[layout.user_col], "user", layout)?, parse_id(fields[layout.item_col], "item", layout)?);
    if layout.rating_col >= n {
        return Ok((ids, None, false));
    }
    let field = trim_field(fields[layout.rating_col]);
    let value = std::str::from_utf8(field).ok().and_then(|t| t.parse::<f32>().ok());
    let shown = || String::from_utf8_lossy(field).into_owned();
    let rating = value.ok_or_else(|| format!("rating {} is not a number{}", quoted(&shown()), decimal_comma_hint(&shown())))?;
    if !rating.is_finite() {
        return Err(format!("rating {} is not a finite number", quoted(&shown())));
    }
    let test = match layout.split_col {
        Some(col) => split_mark(trim_field(fields[col])).ok_or_else(|| {
            format!("split column {} holds {}; expected train or test (or 0 or 1)", col + 1, quoted(&String::from_utf8_lossy(trim_field(fields[col]))))
        })?,
        None => false,
    };
    Ok((ids, Some(rating), test))
}

/// A split column's value: `train`/`0` or `test`/`1`.
fn split_mark(field: &[u8]) -> Option<bool> {
    match field.to_ascii_lowercase().as_slice() {
        b"train" | b"0" => Some(false),
        b"test" | b"1" => Some(true),
        _ => None,
    }
}

/// A field without the spaces and the one pair of quotes around it.
pub(super) fn trim_field(field: &[u8]) -> &[u8] {
    let field = field.trim_ascii();
    field.strip_prefix(b"\"").and_then(|f| f.strip_suffix(b"\"")).unwrap_or(field)
}

/// The id in a field ([`IdToken::read`]); Matrix Market's are numbers from 1 (leading zeros
/// and all).
fn parse_id<'a>(field: &'a [u8], what: &str, layout: &Layout) -> std::result::Result<IdToken<'a>, String> {
    let id = IdToken::read(trim_field(field), what)?;
    match (id, layout.mtx_size) {
        (IdToken::Label(_, text), Some(_)) => match std::str::from_utf8(text).ok().and_then(|t| t.parse::<u64>().ok()) {
            Some(n) => Ok(IdToken::Number(n)),
            None => Err(format!("bad {what} index {}: Matrix Market's indices are integers from 1", quoted(&String::from_utf8_lossy(text)))),
        },
        _ => Ok(id),
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


/// Reads (user, item) pairs, one a line, for `predict --pairs`: separated as rating files are
/// (tab, comma, semicolon, spaces or '::'), further columns ignored, a header line skipped.
pub fn load_pairs(path: &Path) -> Result<Vec<(ExternalId, ExternalId)>> {
    let rows = field_lines(path, "user item", |f| Ok((id_field(f, 0, "user")?, id_field(f, 1, "item")?)))?;
    Ok(rows.into_iter().map(|(_, pair)| pair).collect())
}

/// Reads one id a line (the first field, as [`load_pairs`] reads them), for `predict --users`:
/// each with its line number, so an id the model lacks can be named with its place.
pub fn load_ids(path: &Path, what: &str) -> Result<Vec<(u64, ExternalId)>> {
    field_lines(path, what, |f| id_field(f, 0, what))
}

/// An item a new user gave, and the value they gave it if the line says.
pub type RatedItem = (ExternalId, Option<f32>);

/// Reads `item [value]` lines, for `predict --items` (a new user's items): each with its line
/// number; the value is `None` where the line gives only the item.
pub fn load_rated_items(path: &Path) -> Result<Vec<(u64, RatedItem)>> {
    field_lines(path, "item [value]", |f| {
        let value = match f.get(1).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(v.parse::<f32>().ok().filter(|x| x.is_finite()).ok_or_else(|| format!("value {} is not a finite number", quoted(v)))?),
        };
        Ok((id_field(f, 0, "item")?, value))
    })
}

/// Field `k` of a line as an id named `what`.
fn id_field(fields: &[&str], k: usize, what: &str) -> std::result::Result<ExternalId, String> {
    match fields.get(k) {
        None | Some(&"") => Err(format!("missing the {what} id")),
        Some(f) => ExternalId::parse(f, what),
    }
}

/// Each line's fields parsed by `parse`, with the line's number (1-based): lines separated as
/// rating files are, blank and `#` lines skipped, a header skipped ([`is_header`]), any other
/// line that does not parse an error naming it and `expected`.
fn field_lines<T>(path: &Path, expected: &str, parse: impl Fn(&[&str]) -> std::result::Result<T, String>) -> Result<Vec<(u64, T)>> {
    if path.is_dir() {
        return Err(Error::IsDirectory { path: path.into() });
    }
    let bytes = read_unpacked(path, super::archive::memory_cap(None))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::Format { path: path.into(), message: format!("not UTF-8 text (byte {})", e.valid_up_to()) })?;
    let delimiter = Delimiter::of_line(first_data_line(&bytes));
    let fields_of = |line| -> Vec<&str> { delimiter.split(line).map(str::trim).collect() };
    let mut lines = text.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty() && !l.starts_with('#')).peekable();
    let mut rows = Vec::new();
    let mut first = true;
    while let Some((n, line)) = lines.next() {
        let fields = fields_of(line);
        if std::mem::take(&mut first) && is_header(&fields, lines.peek().map(|&(_, next)| fields_of(next))) {
            continue;
        }
        match parse(&fields) {
            Ok(row) => rows.push((n as u64 + 1, row)),
            Err(message) => {
                let message = format!("{message} ({}; expected `{expected}`, {}-separated)", quoted(line), delimiter.name());
                return Err(Error::Parse { path: path.into(), line: n as u64 + 1, message });
            }
        }
    }
    if rows.is_empty() {
        return Err(Error::Format { path: path.into(), message: format!("no `{expected}` lines in the file") });
    }
    Ok(rows)
}

/// Whether the first line of a list of ids (`fields`; `next`, the line after it) is a header:
/// its first field names a column as a rating file's header does (user, userId, item, ...), or
/// is a word above a line of numeric ids. (Ids may be labels, so a word alone is no sign.)
fn is_header(fields: &[&str], next: Option<Vec<&str>>) -> bool {
    let numeric_below = next.is_some_and(|f| f[0].bytes().all(|b| b.is_ascii_digit()));
    names_a_column(fields[0]) || (numeric_below && fields[0].bytes().any(|b| b.is_ascii_alphabetic()))
}

/// Whether a field is the name a header gives the user or the item column.
fn names_a_column(field: &str) -> bool {
    let name = field.trim().trim_matches('"').to_ascii_lowercase();
    USER_COLUMNS.contains(&name.as_str()) || ITEM_COLUMNS.contains(&name.as_str())
}

/// The names a header gives the user and the item column.
const USER_COLUMNS: [&str; 4] = ["user", "userid", "user_id", "uid"];
const ITEM_COLUMNS: [&str; 7] = ["item", "movieid", "itemid", "item_id", "movie_id", "movie", "iid"];

/// What [`stream_ratings`] read: the id maps it built, and counts.
#[derive(Debug)]
pub struct StreamReport {
    pub users: IdMap,
    pub items: IdMap,
    pub ratings: u64,
    pub skipped_lines: u64,
    pub format: Format,
    /// Lines of a user and an item only (each read as one event), and the first one's line.
    pub events: Option<(u64, u64)>,
}

/// Bytes of the file in memory at once while streaming.
const PIECE: usize = 64 << 20;

/// Reads a rating file piece by piece, never whole, handing each piece's ratings (ids interned
/// into dense indices as they come) to `sink`: how a file larger than memory goes into the
/// block cache. Text with one rating per line (every delimited format, CSV with its header,
/// Matrix Market) and binary records; what needs the whole file (gzip or zip, a dense matrix,
/// a split column, a duplicates policy other than keep) is refused by name.
pub fn stream_ratings(path: &Path, options: &LoadOptions, sink: impl FnMut(&[Rating]) -> Result<()>) -> Result<StreamReport> {
    stream_in_pieces(path, options, PIECE, sink)
}

/// The flag that needs the whole file in memory at once, if `options` has one.
fn whole_file_flag(options: &LoadOptions) -> Option<&'static str> {
    if options.split_column.is_some() {
        Some("--split-column")
    } else if options.duplicates != Duplicates::Keep {
        Some("--duplicates other than keep")
    } else if options.format == Format::Dense {
        Some("--format dense")
    } else {
        None
    }
}

/// Whether [`stream_ratings`] can read `path` with `options`: no flag that needs the whole file,
/// and not a compressed file (which is unpacked whole). A file that cannot be opened counts as
/// streamable, so that reading it gives the error.
pub fn streamable(path: &Path, options: &LoadOptions) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    let packed = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && is_packed(&head);
    whole_file_flag(options).is_none() && !packed
}

/// A file read a piece at a time: at most a regular file's size when it was opened, and for a
/// pipe or device at most `cap` bytes (`LoadOptions::max_bytes`), so that an input that goes
/// on (/dev/zero) stops with an error rather than fill the disk.
struct Pieces<'a> {
    path: &'a Path,
    file: std::fs::File,
    piece_bytes: usize,
    /// Bytes still to read at most, and whether reaching that is an error (not a regular file).
    left: u64,
    capped: bool,
}

impl<'a> Pieces<'a> {
    fn open(path: &'a Path, piece_bytes: usize, cap: Option<u64>) -> Result<Pieces<'a>> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::IsDirectory { path: path.into() });
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let (left, capped) = if meta.is_file() { (meta.len(), false) } else { (cap.unwrap_or(u64::MAX), cap.is_some()) };
        Ok(Pieces { path, file, piece_bytes, left, capped })
    }

    /// Tops `piece` up to a piece's length; returns whether the input has ended.
    fn fill(&mut self, piece: &mut Vec<u8>) -> Result<bool> {
        use std::io::Read;
        let want = (self.piece_bytes.saturating_sub(piece.len()) as u64).min(self.left);
        let got = (&mut self.file).take(want).read_to_end(piece).map_err(|e| Error::io(self.path, e))? as u64;
        self.left -= got;
        if self.left == 0 && self.capped {
            let mut probe = [0u8; 1];
            if std::io::Read::read(&mut self.file, &mut probe).map_err(|e| Error::io(self.path, e))? > 0 {
                return Err(Error::TooLarge(format!("{}: not a regular file (a device or a pipe), and it goes on past the {} it may give; is it the input meant?", self.path.display(), crate::resources::human_bytes(self.left + got))));
            }
        }
        Ok(got < want || self.left == 0)
    }
}

/// [`stream_ratings`] with pieces of `piece_bytes` (small ones test the seams).
fn stream_in_pieces(path: &Path, options: &LoadOptions, piece_bytes: usize, sink: impl FnMut(&[Rating]) -> Result<()>) -> Result<StreamReport> {
    check_options(options)?;
    if let Some(flag) = whole_file_flag(options) {
        return Err(Error::InvalidParameter(format!("{flag} needs the whole file in memory, and --memory reads it piece by piece; leave one of them out")));
    }
    let mut pieces = Pieces::open(path, piece_bytes, options.max_bytes)?;
    let mut piece: Vec<u8> = Vec::with_capacity(piece_bytes);
    let at_end = pieces.fill(&mut piece)?;
    if piece.starts_with(b"\xEF\xBB\xBF") {
        piece.drain(..3);
    }
    if piece.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::EmptyFile { path: path.into() });
    }
    if let Some(what) = unread_container(&piece).or(is_packed(&piece).then_some("a compressed file (gzip or zip)")) {
        return Err(Error::Format { path: path.into(), message: format!("this is {what}; --memory reads uncompressed rating files piece by piece: unpack it first") });
    }
    let format = match options.format {
        Format::Auto => detect_format(&piece, path, options)?,
        f => f,
    };
    refuse_columns(format, path, options)?;
    let mut stream = Stream { path, skip_bad_lines: options.skip_bad_lines, threshold: options.positive_threshold, users: IdMap::new(), items: IdMap::new(), labels: Labels::default(), count: 0, skipped: 0, events: None, sink };
    if format == Format::Binary {
        stream.binary(pieces, piece, at_end)?;
    } else {
        stream.text(pieces, piece, at_end, format, piece_bytes, options.columns.as_ref())?;
    }
    if stream.count == 0 {
        return Err(Error::Format { path: path.into(), message: "no valid ratings".into() });
    }
    Ok(StreamReport { users: stream.users, items: stream.items, ratings: stream.count, skipped_lines: stream.skipped, format, events: stream.events })
}

/// What streaming has read so far, and where its ratings go.
struct Stream<'a, S> {
    path: &'a Path,
    skip_bad_lines: bool,
    threshold: Option<f32>,
    users: IdMap,
    items: IdMap,
    /// The labels' texts met so far, given to the maps at the end.
    labels: Labels,
    count: u64,
    skipped: u64,
    /// Lines of a user and an item only, and the first one's line.
    events: Option<(u64, u64)>,
    sink: S,
}

impl<S: FnMut(&[Rating]) -> Result<()>> Stream<'_, S> {
    /// Hands `out` to the sink and empties it.
    fn send(&mut self, out: &mut Vec<Rating>) -> Result<()> {
        if let Some(t) = self.threshold {
            binarise(out, t);
        }
        self.count += out.len() as u64;
        (self.sink)(out)?;
        out.clear();
        Ok(())
    }

    /// cuMF_SGD's binary records, piece by piece.
    fn binary(&mut self, mut pieces: Pieces, mut piece: Vec<u8>, mut at_end: bool) -> Result<()> {
        const RECORD: usize = 12;
        let (mut record, mut out) = (0u64, Vec::new());
        loop {
            let whole = piece.len() / RECORD * RECORD;
            for b in piece[..whole].chunks_exact(RECORD) {
                record += 1;
                let (u, i, r) = binary_record(b);
                if u < 0 || i < 0 || !r.is_finite() {
                    if self.skip_bad_lines {
                        self.skipped += 1;
                        continue;
                    }
                    let message = format!("record {record}: user {u}, item {i}, rating {r}: ids must be non-negative and the rating finite");
                    return Err(Error::Parse { path: self.path.into(), line: record, message });
                }
                out.push(Rating { user: self.users.intern(u as u64), item: self.items.intern(i as u64), value: r });
            }
            self.send(&mut out)?;
            piece.drain(..whole);
            if at_end {
                break;
            }
            at_end = pieces.fill(&mut piece)?;
        }
        if !piece.is_empty() {
            return Err(Error::Format { path: self.path.into(), message: format!("binary ratings end in {} bytes that are not a whole 12-byte record (truncated?)", piece.len()) });
        }
        Ok(())
    }

    /// Delimited text, piece by piece, each piece cut after its last whole line.
    fn text(&mut self, mut pieces: Pieces, mut piece: Vec<u8>, mut at_end: bool, format: Format, piece_bytes: usize, columns: Option<&Columns>) -> Result<()> {
        let layout = Layout::for_file(format, &piece, self.path, columns)?;
        let mut lines_before = count_lines(&piece[..layout.body_start]);
        piece.drain(..layout.body_start);
        let mut out = Vec::new();
        loop {
            let end = if at_end {
                piece.len()
            } else {
                match piece.iter().rposition(|&b| b == b'\n') {
                    Some(last) => last + 1,
                    None => return Err(Error::Parse { path: self.path.into(), line: lines_before + 1, message: long_line(&piece[..piece.len().min(piece_bytes)]) }),
                }
            };
            let body = &piece[..end];
            self.piece(body, &layout, lines_before, &mut out)?;
            self.send(&mut out)?;
            lines_before += count_lines(body);
            piece.drain(..end);
            if at_end {
                break;
            }
            at_end = pieces.fill(&mut piece)?;
        }
        let path = self.path;
        for (side, map) in [&mut self.users, &mut self.items].into_iter().enumerate() {
            *map = std::mem::take(map).with_labels(self.labels.side(side)).map_err(|message| Error::Format { path: path.into(), message })?;
        }
        if let Some((_, _, nnz)) = layout.mtx_size {
            if !self.skip_bad_lines && self.count != nnz {
                return Err(Error::Format { path: self.path.into(), message: format!("Matrix Market header declares {nnz} entries but the file has {} (truncated?)", self.count) });
            }
        }
        Ok(())
    }

    /// One piece's whole lines (`body`, after `lines_before` lines of the file) parsed into
    /// `out`, its labels' texts kept and checked against those of the pieces before it.
    fn piece(&mut self, body: &[u8], layout: &Layout, lines_before: u64, out: &mut Vec<Rating>) -> Result<()> {
        let chunks = split_chunks(body);
        let mut parsed: Vec<ChunkResult> = chunks.par_iter().map(|&(s, e)| parse_chunk(&body[s..e], layout, self.skip_bad_lines)).collect();
        let line_of = |c: usize, local: u64| lines_before + count_lines(&body[..chunks[c].0]) + local + 1;
        for (c, chunk) in parsed.iter_mut().enumerate() {
            if let Some((local, message)) = &chunk.error {
                return Err(Error::Parse { path: self.path.into(), line: line_of(c, *local), message: message.clone() });
            }
            self.skipped += chunk.skipped;
            if let Some(first) = chunk.first_event {
                self.events.get_or_insert_with(|| (0, line_of(c, first))).0 += chunk.events;
            }
            let sides = [&mut self.users, &mut self.items];
            self.labels.intern(chunk, &body[chunks[c].0..chunks[c].1], layout, |side, key| sides[side].intern_new(key), out);
        }
        match self.labels.first_clash(&parsed, body, &chunks, layout, out) {
            Some((c, (local, message))) => Err(Error::Parse { path: self.path.into(), line: line_of(c, local), message }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod stream_tests {
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

    /// Streaming in pieces of a few hundred bytes reads what the whole-file loader reads: the
    /// same ratings, ids and values, in order, whatever the seams cut (lines, a CSV header,
    /// binary records).
    #[test]
    fn streaming_in_small_pieces_reads_what_the_whole_file_loader_reads() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..997).map(|n| format!("{}\t{}\t{}.5\n", n * 7 % 131 + 1000, n * 13 % 89, n % 5)).collect();
        let csv = format!("userId,movieId,rating,timestamp\n{}", (0..500).map(|n| format!("{},{},{},9\n", n % 37, n * 3 % 101, n % 5 + 1)).collect::<String>());
        let records: Vec<Rating> = (0..777).map(|n| Rating { user: n % 51, item: n * 5 % 97, value: (n % 5) as f32 }).collect();
        // Labelled ids (ASINs) beside numbers: each piece's labels join the maps.
        let labelled: String = (0..600).map(|n| format!("A{:X},B00{},{}\n", n % 43 * 7919, n * 11 % 71, n % 5 + 1)).collect();
        // A file of events (a user and an item a line): the lines are counted as whole files count them.
        let events: String = (0..400).map(|n| format!("{} {}\n", n % 29, n * 3 % 53)).collect();
        let files = [("a.tsv", text.into_bytes()), ("b.csv", csv.into_bytes()), ("c.bin", bytemuck::cast_slice(&records).to_vec()), ("d.csv", labelled.into_bytes()), ("e.txt", events.into_bytes())];
        for (name, bytes) in files {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let loaded = load_ratings(&path, LoadOptions::default()).unwrap();
            let (whole, events) = (loaded.ratings, loaded.events);
            assert_eq!(events.is_some(), name == "e.txt", "{name}");
            for piece in [100, 257, 1 << 20] {
                let mut streamed = Vec::new();
                let report = stream_in_pieces(&path, &LoadOptions::default(), piece, |rs| {
                    streamed.extend_from_slice(rs);
                    Ok(())
                })
                .unwrap();
                assert_eq!(streamed, whole.entries, "{name}, pieces of {piece}");
                assert_eq!((report.users, report.items), (whole.users.clone(), whole.items.clone()), "{name}");
                assert_eq!(report.events, events, "{name}, pieces of {piece}");
            }
        }
    }

    /// Two texts of one key (a hash collision, one chance in about 2^63 a pair, so made here
    /// by hand): every labelled line is checked against the text first met for its key, and
    /// the first that differs is named with its line.
    #[test]
    fn a_label_whose_key_another_text_has_is_named_with_its_line() {
        let chunk = b"7,1,5\nA1,B2,4\nA3,B2,1\nA1,B2,3\n";
        let layout = Layout::plain(crate::data::text::Delimiter::Comma);
        let parsed = parse_chunk(chunk, &layout, false);
        assert_eq!(parsed.label_lines.first, Some(1), "the first rating naming a label");
        let mut labels = Labels::default();
        let (mut users, mut items) = (IdMap::new(), IdMap::new());
        let mut ratings = Vec::new();
        let mut parsed = parsed;
        labels.intern(&mut parsed, chunk, &layout, |side, key| if side == 0 { users.intern_new(key) } else { items.intern_new(key) }, &mut ratings);
        assert_eq!(ratings.len(), 4);
        assert_eq!(labels.clash(&parsed, chunk, &layout, &ratings), None);
        let a3 = IdToken::read(b"A3", "user").unwrap().key();
        assert_eq!(&*labels.texts[0][&a3], b"A3");
        // Had A1's key been met first with the text A3, line 1 (0-based) is the first to clash.
        let a1 = IdToken::read(b"A1", "user").unwrap().key();
        labels.texts[0].insert(a1, b"A3".as_slice().into());
        labels.set_check(0, ratings[1].user, Labels::check(b"A3"));
        let (line, message) = labels.clash(&parsed, chunk, &layout, &ratings).unwrap();
        assert_eq!(line, 1);
        assert!(message.contains("\"A3\" and \"A1\" have the same 63-bit hash"), "{message}");
    }

    #[test]
    fn what_needs_the_whole_file_is_refused_by_name_and_bad_lines_keep_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.tsv");
        let text: String = (0..300).map(|n| if n == 211 { "1\t2\tlots\n".to_string() } else { format!("{n}\t{n}\t3\n") }).collect();
        std::fs::write(&path, text).unwrap();
        let e = stream_in_pieces(&path, &LoadOptions::default(), 64, |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains(":212:"), "{e}");
        let e = stream_ratings(&path, &LoadOptions { duplicates: Duplicates::Mean, ..LoadOptions::default() }, |_| Ok(())).unwrap_err().to_string();
        assert!(e.contains("--duplicates") && e.contains("--memory"), "{e}");
    }
}
