//! One line of a delimited or Matrix Market rating file: the file's layout (delimiter,
//! columns, header, where the data starts), lines parsed chunk by chunk in parallel, and the
//! texts of labelled ids kept and checked; shared by the whole-file loader and the streaming one.

use super::options::{Column, Columns, Format, MAX_FIELDS};
use super::text::{count_lines, decimal_comma_hint, field_ranges, first_data_line, quoted, Delimiter, MAX_LINE};
use super::{labels_clash, IdToken, Rating, LABEL_BIT};
use crate::error::{Error, Result};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::hash::Hasher;
use std::path::Path;

/// Where the columns are and where the data starts, fixed per file.
#[derive(Debug)]
pub(super) struct Layout {
    delimiter: Delimiter,
    user_col: usize,
    item_col: usize,
    rating_col: usize,
    min_fields: usize,
    max_fields: usize,
    pub(super) body_start: usize,
    /// Lines starting with this are comments.
    comment: u8,
    /// Matrix Market's declared rows, columns and entries.
    pub(super) mtx_size: Option<(u64, u64, u64)>,
    /// The column that marks a rating train or test.
    pub(super) split_col: Option<usize>,
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

    pub(super) fn for_file(format: Format, bytes: &[u8], path: &Path, columns: Option<&Columns>) -> Result<Layout> {
        let mut layout = Self::of_format(format, bytes, path, columns)?;
        // (A header's layout takes them itself, by its names.)
        if let Some(columns) = columns.filter(|_| format != Format::Csv) {
            layout.take_columns(columns, &[], path)?;
        }
        Ok(layout)
    }

    /// Reads `column` (from 1) as the split column that marks each rating train or test.
    pub(super) fn mark_split(&mut self, column: usize, format: Format) -> Result<()> {
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
        let delimiter = Delimiter::of_line(header);
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
        let rating_col = find(&RATING_COLUMNS, "rating").unwrap_or(usize::MAX);
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

/// One chunk of a file's lines, parsed on a thread of its own ([`parse_chunk`]): its ratings
/// with their ids still as keys, what it skipped, and its first fault.
pub(super) struct ChunkResult {
    /// User, item (their keys, [`IdToken`]), rating, and whether the split column marks it test.
    pub(super) triplets: Vec<(u64, u64, f32, bool)>,
    /// From the first rating that names a label on ([`LabelLines`]), where each one's line
    /// starts in the chunk: the labels' texts are read there again, not kept for every line.
    label_lines: LabelLines,
    pub(super) skipped: u64,
    /// Lines of a user and an item only (an event each, read as 1), and the first of them
    /// (0-based within the chunk).
    pub(super) events: u64,
    pub(super) first_event: Option<u64>,
    /// The first bad line (0-based within the chunk) and what was wrong.
    pub(super) error: Option<(u64, String)>,
}

pub(super) fn parse_chunk(chunk: &[u8], layout: &Layout, skip_bad: bool) -> ChunkResult {
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
pub(super) struct Labels {
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
    pub(super) fn intern(&mut self, chunk: &mut ChunkResult, bytes: &[u8], layout: &Layout, mut intern: impl FnMut(usize, u64) -> (u32, bool), ratings: &mut Vec<Rating>) {
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
    pub(super) fn first_clash(&self, parsed: &[ChunkResult], body: &[u8], chunks: &[(usize, usize)], layout: &Layout, ratings: &[Rating]) -> Option<(usize, (u64, String))> {
        parsed.par_iter().enumerate().find_map_first(|(c, chunk)| self.clash(chunk, &body[chunks[c].0..chunks[c].1], layout, ratings).map(|e| (c, e)))
    }

    /// The texts of one side (0 users, 1 items), for [`super::IdMap::with_labels`].
    pub(super) fn side(&self, side: usize) -> impl Iterator<Item = (u64, &[u8])> {
        self.texts[side].iter().map(|(&key, text)| (key, &**text))
    }
}

/// A line's user and item, its rating (`None` on a line of a user and an item only: an event)
/// and whether the split column marks it test.
type Line<'a> = ((IdToken<'a>, IdToken<'a>), Option<f32>, bool);

/// The error for a line longer than [`MAX_LINE`]: its length and its start.
pub(super) fn long_line(raw: &[u8]) -> String {
    let head = String::from_utf8_lossy(&raw[..raw.len().min(200)]);
    format!("a line of {} bytes, longer than any line of ratings (at most {}): {}", raw.len(), crate::resources::human_bytes(MAX_LINE as u64), quoted(&head))
}


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

/// The file line of the `ordinal`-th rating read, by the same rules as the parse.
pub(super) fn line_of_entry(bytes: &[u8], layout: &Layout, ordinal: usize) -> u64 {
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

/// Whether a field is the name a header gives the user or the item column.
pub(super) fn names_a_column(field: &str) -> bool {
    let name = field.trim().trim_matches('"').to_ascii_lowercase();
    USER_COLUMNS.contains(&name.as_str()) || ITEM_COLUMNS.contains(&name.as_str())
}

/// The names (lower case) a header gives the user, the item and the rating column; a header
/// that names a user and an item but no rating is a file of events. Python's package finds a
/// data frame's columns by the same names.
pub const USER_COLUMNS: [&str; 4] = ["user", "userid", "user_id", "uid"];
pub const ITEM_COLUMNS: [&str; 7] = ["item", "movieid", "itemid", "item_id", "movie_id", "movie", "iid"];
pub const RATING_COLUMNS: [&str; 6] = ["rating", "score", "value", "count", "weight", "plays"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IdMap;

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
}
