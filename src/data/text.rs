//! What every text loader shares: the delimiter a line uses, the first data line, line-aligned
//! chunks for the parallel parse, and dense indices handed out in order of first appearance.

use super::IdMap;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// `bytes` without a UTF-8 byte-order mark at its start.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Bytes a line of ratings may take: a longer one is an error naming it (a rating line is a few
/// dozen bytes; a dense matrix's row of 100,000 items a megabyte at most).
pub const MAX_LINE: usize = 1 << 20;

/// Characters of a user's value quoted in an error, at most: a 10 MB field must not become
/// 10 MB of stderr.
pub const QUOTED_CHARS: usize = 40;

/// cuMF_SGD's binary record {i32 user, i32 item, f32 rating}: 12 little-endian bytes.
pub fn binary_record(b: &[u8]) -> (i32, i32, f32) {
    let word = |at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
    (i32::from_le_bytes(word(0)), i32::from_le_bytes(word(4)), f32::from_le_bytes(word(8)))
}

/// `text` quoted for an error message, cut to [`QUOTED_CHARS`] characters (saying how long it
/// was when cut).
pub fn quoted(text: &str) -> String {
    if text.chars().count() <= QUOTED_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(QUOTED_CHARS).collect();
    format!("{head:?}… ({} bytes in all)", text.len())
}

/// A hint for a rating written with a decimal comma (`3,5` in a semicolon- or tab-separated
/// file from a European spreadsheet). Not read as 3.5: `1,000` may be a thousand.
pub fn decimal_comma_hint(field: &str) -> String {
    let point = field.replacen(',', ".", 1);
    if field.matches(',').count() == 1 && point.parse::<f32>().is_ok_and(f32::is_finite) {
        format!(": ratings are read with a decimal point, not a comma: write {point}")
    } else {
        String::new()
    }
}

/// Reads a small text file whole, but never more than `limit` bytes: a file that goes on (a
/// device such as /dev/zero, a wrong file) is an error naming it, not all of memory. `what`
/// says what the file should be ("a host file").
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    if path.is_dir() {
        return Err(Error::IsDirectory { path: path.into() });
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::TooLarge(format!("{}: longer than {} and so not {what}", path.display(), crate::resources::human_bytes(limit))));
    }
    String::from_utf8(bytes).map_err(|e| Error::Format { path: path.into(), message: format!("not UTF-8 text (byte {}), and so not {what}", e.utf8_error().valid_up_to()) })
}

/// Assigns dense indices in order of first appearance: through a direct table when the ids are
/// small integers (MovieLens, Netflix: far faster than hashing), else through the hash map.
pub(crate) enum Interner {
    Table { index: Vec<u32>, external: Vec<u64> },
    Map(IdMap),
}

impl Interner {
    pub(crate) fn new(max_id: u64, entries: usize) -> Interner {
        if max_id < (1 << 20) || max_id <= 4 * entries as u64 {
            Interner::Table { index: vec![u32::MAX; max_id as usize + 1], external: Vec::new() }
        } else {
            Interner::Map(IdMap::new())
        }
    }

    #[inline]
    pub(crate) fn intern(&mut self, id: u64) -> u32 {
        self.intern_new(id).0
    }

    /// The index of `id`, and whether it is new.
    #[inline]
    pub(crate) fn intern_new(&mut self, id: u64) -> (u32, bool) {
        match self {
            Interner::Table { index, external } => {
                let slot = &mut index[id as usize];
                let new = *slot == u32::MAX;
                if new {
                    *slot = external.len() as u32;
                    external.push(id);
                }
                (*slot, new)
            }
            Interner::Map(map) => map.intern_new(id),
        }
    }

    pub(crate) fn finish(self) -> IdMap {
        match self {
            Interner::Table { external, .. } => IdMap::from_externals(external),
            Interner::Map(map) => map,
        }
    }
}

pub(crate) fn first_data_line(bytes: &[u8]) -> &str {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let head = std::str::from_utf8(head).unwrap_or_else(|e| std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""));
    head.lines().map(|l| l.trim_end_matches('\r')).find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or("")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delimiter {
    Tab,
    Comma,
    Semicolon,
    DoubleColon,
    /// Runs of spaces or tabs.
    Whitespace,
}

impl Delimiter {
    /// The delimiter a line of delimited text uses: '::', tab, comma, semicolon, else spaces.
    pub(crate) fn of_line(line: &str) -> Delimiter {
        if line.contains("::") {
            Delimiter::DoubleColon
        } else if line.contains('\t') {
            Delimiter::Tab
        } else if line.contains(',') {
            Delimiter::Comma
        } else if line.contains(';') {
            Delimiter::Semicolon
        } else {
            Delimiter::Whitespace
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Delimiter::Tab => "tab",
            Delimiter::Comma => "comma",
            Delimiter::Semicolon => "semicolon",
            Delimiter::DoubleColon => "'::'",
            Delimiter::Whitespace => "space",
        }
    }

    /// The fields of `line`; with a one-character delimiter, a quoted field is one field
    /// whatever it holds ([`field_ranges`]).
    pub(crate) fn split(self, line: &str) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Delimiter::Tab | Delimiter::Comma | Delimiter::Semicolon => Box::new(field_ranges(line.as_bytes(), self.symbol().as_bytes()[0]).map(|f| &line[f])),
            Delimiter::DoubleColon => Box::new(line.split("::")),
            Delimiter::Whitespace => Box::new(line.split_ascii_whitespace()),
        }
    }

    /// Another delimiter the line seems to use instead, for the "inconsistent delimiter" error.
    pub(crate) fn other_in(self, line: &str) -> Option<Delimiter> {
        [Delimiter::DoubleColon, Delimiter::Tab, Delimiter::Comma, Delimiter::Semicolon]
            .into_iter()
            .find(|&d| d != self && line.contains(d.symbol()) && !(self == Delimiter::Whitespace && d == Delimiter::Tab))
            .or_else(|| (self != Delimiter::Whitespace && line.trim().contains(' ')).then_some(Delimiter::Whitespace))
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Delimiter::Tab => "\t",
            Delimiter::Comma => ",",
            Delimiter::Semicolon => ";",
            Delimiter::DoubleColon => "::",
            Delimiter::Whitespace => " ",
        }
    }
}

/// The byte ranges of `line`'s fields split at `sep`, as `split` gives them but that a quoted
/// field is whole ([`field_end`]).
pub(crate) fn field_ranges(line: &[u8], sep: u8) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let s = start?;
        let end = s + field_end(&line[s..], sep);
        start = (end < line.len()).then_some(end + 1);
        Some(s..end)
    })
}

/// Where the field that `rest` starts with ends: at the first `sep`, or, for a field that opens
/// with a quote (after spaces), at the first `sep` after its closing quote, so that a quoted
/// label holds the delimiter (`"Smith, J"`); a doubled quote inside is one quote of the text.
/// An unclosed quote is no quote.
#[inline]
fn field_end(rest: &[u8], sep: u8) -> usize {
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let mut from = 0;
    if rest.get(start) == Some(&b'"') {
        let mut at = start + 1;
        while let Some(q) = rest[at..].iter().position(|&b| b == b'"') {
            at += q + 1;
            if rest.get(at) != Some(&b'"') {
                from = at;
                break;
            }
            at += 1;
        }
    }
    rest[from..].iter().position(|&b| b == sep).map_or(rest.len(), |p| from + p)
}

/// Cuts the text into line-aligned pieces for the parallel parse.
pub(crate) fn split_chunks(body: &[u8]) -> Vec<(usize, usize)> {
    const CHUNK: usize = 1 << 20;
    let mut chunks = Vec::with_capacity(body.len() / CHUNK + 1);
    let mut start = 0;
    while start < body.len() {
        let mut end = (start + CHUNK).min(body.len());
        while end < body.len() && body[end - 1] != b'\n' {
            end += 1;
        }
        chunks.push((start, end));
        start = end;
    }
    chunks
}

pub(crate) fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}
