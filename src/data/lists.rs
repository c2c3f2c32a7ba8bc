//! Files that are not rating files: (user, item) pairs, ids and a new user's items, for
//! `predict`; separated as rating files are, a header line skipped.

use super::archive::read_unpacked;
use super::text::{first_data_line, quoted, Delimiter};
use super::ExternalId;
use super::lines::names_a_column;
use crate::error::{Error, Result};
use std::path::Path;

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
