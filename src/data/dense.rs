//! Dense rating matrices: one line per user, one column per item, a marker where a user did
//! not rate (e.g. the Jester jokes data: a count column, then 100 ratings with 99 for none).
//! Ids are the row and column numbers, from 1, counted after `--skip-columns`.

use super::text::{count_lines, decimal_comma_hint, first_data_line, quoted, split_chunks, Delimiter, Interner};
use super::{Rating, RatingSet};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

/// How a line's cells are read.
struct Grid<'a> {
    delimiter: Delimiter,
    /// Fields per line, the first data line's.
    columns: usize,
    skip: usize,
    missing: Option<&'a str>,
    missing_value: Option<f64>,
}

impl Grid<'_> {
    fn is_missing(&self, field: &str) -> bool {
        field.is_empty() || self.missing == Some(field) || self.missing_value.is_some_and(|m| field.parse::<f64>().is_ok_and(|v| v == m))
    }

    fn fields<'l>(&self, line: &'l str) -> Vec<&'l str> {
        let mut fields: Vec<&str> = self.delimiter.split(line).map(|f| f.trim().trim_matches('"')).collect();
        // A trailing delimiter is not an extra column.
        if fields.len() == self.columns + 1 && fields.last() == Some(&"") {
            fields.pop();
        }
        fields
    }

    /// The line's ratings as (column from 1, rating), or what is wrong with it.
    fn parse(&self, line: &str) -> std::result::Result<Vec<(u32, f32)>, String> {
        let fields = self.fields(line);
        if fields.len() != self.columns {
            return Err(format!("row has {} {}-separated columns; the first row has {}", fields.len(), self.delimiter.name(), self.columns));
        }
        let mut cells = Vec::new();
        for (c, field) in fields[self.skip..].iter().enumerate() {
            if self.is_missing(field) {
                continue;
            }
            let column = self.skip + c + 1;
            let rating: f32 = field.parse().map_err(|_| format!("column {column}: rating {} is not a number (nor the --missing marker){}", quoted(field), decimal_comma_hint(field)))?;
            if !rating.is_finite() {
                return Err(format!("column {column}: rating {} is not a finite number", quoted(field)));
            }
            cells.push((c as u32 + 1, rating));
        }
        Ok(cells)
    }
}

struct DenseChunk {
    /// Row (within the chunk, from 0), column, rating.
    cells: Vec<(u32, u32, f32)>,
    rows: u32,
    skipped: u64,
    error: Option<(u64, String)>,
}

impl Grid<'_> {
    /// One chunk's lines: its cells by row, or the first bad line's number within the chunk
    /// and what is wrong with it.
    fn parse_chunk(&self, text: &[u8], skip_bad_lines: bool) -> DenseChunk {
        let mut out = DenseChunk { cells: Vec::new(), rows: 0, skipped: 0, error: None };
        for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = match std::str::from_utf8(raw) {
                Ok(l) => l.trim_end_matches('\r'),
                Err(_) => {
                    out.error = Some((n as u64, "not UTF-8 text".into()));
                    return out;
                }
            };
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            match self.parse(line) {
                Ok(cells) => out.cells.extend(cells.into_iter().map(|(c, r)| (out.rows, c, r))),
                Err(_) if skip_bad_lines => out.skipped += 1,
                Err(message) => {
                    out.error = Some((n as u64, message));
                    return out;
                }
            }
            out.rows += 1;
        }
        out
    }
}

/// The ratings of a dense matrix and the count of malformed lines skipped (`skip_bad_lines`);
/// `missing` marks an unrated cell, and the first `skip_columns` columns are not ratings.
pub(super) fn parse_dense(bytes: &[u8], path: &Path, missing: Option<&str>, skip_columns: usize, skip_bad_lines: bool) -> Result<(RatingSet, u64)> {
    let first = first_data_line(bytes);
    let delimiter = Delimiter::of_line(first);
    if delimiter == Delimiter::DoubleColon {
        return Err(Error::Format { path: path.into(), message: "a dense matrix is separated by tabs, commas, semicolons or spaces, not '::'".into() });
    }
    let missing = missing.map(str::trim);
    let mut grid = Grid { delimiter, columns: 0, skip: skip_columns, missing, missing_value: missing.and_then(|m| m.parse().ok()) };
    grid.columns = grid.fields(first).len();
    if grid.columns <= grid.skip {
        return Err(Error::InvalidParameter(format!("--skip-columns {} leaves no rating column: the first row has {} columns", grid.skip, grid.columns)));
    }
    // A first line with a field that is neither a number nor the marker names the columns.
    let header = grid.fields(first)[grid.skip..].iter().any(|f| !grid.is_missing(f) && f.parse::<f64>().is_err());
    let body_start = if header {
        let at = bytes.windows(first.len()).position(|w| w == first.as_bytes()).unwrap_or(0) + first.len();
        bytes[at..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| at + p + 1)
    } else {
        0
    };
    let body = &bytes[body_start..];
    let chunks = split_chunks(body);
    let parsed: Vec<DenseChunk> = chunks.par_iter().map(|&(start, end)| grid.parse_chunk(&body[start..end], skip_bad_lines)).collect();

    let mut skipped = 0;
    let mut total = 0;
    for (c, chunk) in parsed.iter().enumerate() {
        if let Some((local, message)) = &chunk.error {
            let line = count_lines(&bytes[..body_start + chunks[c].0]) + local + 1;
            return Err(Error::Parse { path: path.into(), line, message: message.clone() });
        }
        skipped += chunk.skipped;
        total += chunk.cells.len();
    }
    if total == 0 {
        return Err(Error::Format { path: path.into(), message: "no ratings: every cell is missing".into() });
    }
    let rows: u64 = parsed.iter().map(|c| c.rows as u64).sum();
    let mut users = Interner::new(rows, total);
    let mut items = Interner::new((grid.columns - grid.skip) as u64, total);
    let mut entries = Vec::with_capacity(total);
    let mut row_base = 0u64;
    for chunk in parsed {
        for (row, column, value) in chunk.cells {
            entries.push(Rating { user: users.intern(row_base + row as u64 + 1), item: items.intern(column as u64), value });
        }
        row_base += chunk.rows as u64;
    }
    Ok((RatingSet { entries, users: users.finish(), items: items.finish() }, skipped))
}

#[cfg(test)]
mod tests {
    use super::super::{parse_ratings, Format, LoadOptions, Loaded};
    use super::*;

    fn dense(text: &str, missing: Option<&str>, skip: usize) -> Result<Loaded> {
        let options = LoadOptions { format: Format::Dense, missing: missing.map(String::from), skip_columns: skip, ..Default::default() };
        parse_ratings(text.as_bytes(), Path::new("jokes.csv"), options)
    }

    fn triplets(l: &Loaded) -> Vec<(u64, u64, f32)> {
        l.ratings.entries.iter().map(|r| (l.ratings.users.external_id(r.user), l.ratings.items.external_id(r.item), r.value)).collect()
    }

    #[test]
    fn a_jester_style_matrix_reads_by_row_and_column() {
        // A count column, then ratings on -10..10 with 99 for "not rated".
        let l = dense("3,-7.82,8.79,99\n1,99,99,4.08\n0,99,99,99\n2,0.00,99.0,-9.2\n", Some("99"), 1).unwrap();
        assert_eq!(triplets(&l), vec![(1, 1, -7.82), (1, 2, 8.79), (2, 3, 4.08), (4, 1, 0.0), (4, 3, -9.2)]);
        assert_eq!(l.ratings.users.len(), 3, "row 3 rated nothing");
        // Empty cells are missing too, a header is skipped, tabs work.
        let l = dense("user\ta\tb\n1\t\t5\n2\t4\t\n", None, 1).unwrap();
        assert_eq!(triplets(&l), vec![(1, 2, 5.0), (2, 1, 4.0)]);
    }

    #[test]
    fn a_bad_cell_or_ragged_row_is_named_by_line_and_column() {
        let e = dense("1,2,3\n4,x,6\n", None, 0).unwrap_err().to_string();
        assert!(e.contains("jokes.csv:2") && e.contains("column 2"), "{e}");
        let e = dense("1,2,3\n4,5\n", None, 0).unwrap_err().to_string();
        assert!(e.contains(":2") && e.contains("2 comma-separated columns"), "{e}");
        let e = dense("1,2\n", None, 2).unwrap_err().to_string();
        assert!(e.contains("--skip-columns"), "{e}");
        let e = dense("99,99\n", Some("99"), 0).unwrap_err().to_string();
        assert!(e.contains("every cell is missing"), "{e}");
        let e = dense("1;2;3\n4;2,5;6\n", None, 0).unwrap_err().to_string();
        assert!(e.contains(":2") && e.contains("column 2") && e.contains("not a comma: write 2.5"), "{e}");
    }
}
