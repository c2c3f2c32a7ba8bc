//! How to read a rating file: its format, where its columns are, what to do with a pair
//! rated twice, and the checks of its values against the loss that trains on them.

use crate::error::{Error, Result};
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

/// The most fields of a line that are read (more are counted, not kept).
pub(super) const MAX_FIELDS: usize = 16;
