//! Writing rating files: tab-separated text or cuMF_SGD's binary records, never over a file the
//! user already has unless asked, and never half-written.

use super::Rating;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// The formats gpumf writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteFormat {
    /// `user<TAB>item<TAB>rating` lines (MovieLens u.data style; LIBMF reads it with spaces).
    Tab,
    /// `user item rating` lines, LIBMF's text format.
    Space,
    /// cuMF_SGD's binary records {i32 user, i32 item, f32 rating}.
    Binary,
}

impl crate::choice::Choice for WriteFormat {
    const WHAT: &'static str = "output format";
    const ALL: &'static [(WriteFormat, &'static str, &'static str)] = &[
        (WriteFormat::Tab, "tab", "user<TAB>item<TAB>rating lines (MovieLens u.data style)"),
        (WriteFormat::Space, "space", "user item rating lines, LIBMF's text format"),
        (WriteFormat::Binary, "binary", "cuMF_SGD's binary records {i32 user, i32 item, f32 rating}"),
    ];
}

/// Writes `ratings` with their indices as ids, checked first and written whole or not at all
/// ([`crate::output::write_atomically`]).
pub fn write_ratings(path: &Path, ratings: &[Rating], format: WriteFormat, overwrite: bool) -> Result<()> {
    if format == WriteFormat::Binary && ratings.iter().any(|r| r.user > i32::MAX as u32 || r.item > i32::MAX as u32) {
        return Err(Error::Format { path: path.into(), message: "ids above 2^31 - 1 do not fit cuMF_SGD's int32 records".into() });
    }
    crate::output::write_atomically(path, overwrite, |w| match format {
        WriteFormat::Binary => w.write_all(bytemuck::cast_slice(ratings)),
        WriteFormat::Tab | WriteFormat::Space => {
            let sep = if format == WriteFormat::Tab { '\t' } else { ' ' };
            for r in ratings {
                writeln!(w, "{}{sep}{}{sep}{}", r.user, r.item, r.value)?;
            }
            Ok(())
        }
    })
}

/// Writes `events` (their values aside) as `user item` lines, or as binary records of rating
/// 1, checked first and written whole or not at all.
pub fn write_events(path: &Path, events: &[Rating], format: WriteFormat, overwrite: bool) -> Result<()> {
    match format {
        WriteFormat::Binary => write_ratings(path, &events.iter().map(|r| Rating { value: 1.0, ..*r }).collect::<Vec<_>>(), format, overwrite),
        WriteFormat::Tab | WriteFormat::Space => {
            let sep = if format == WriteFormat::Tab { '\t' } else { ' ' };
            crate::output::write_atomically(path, overwrite, |w| {
                for r in events {
                    writeln!(w, "{}{sep}{}", r.user, r.item)?;
                }
                Ok(())
            })
        }
    }
}

/// Bytes a file of `ratings` takes at most in `format`, for the disk-space check before writing.
pub fn written_size(ratings: u64, format: WriteFormat) -> u64 {
    match format {
        WriteFormat::Binary => 12 * ratings,
        // Ids up to 10 digits, a rating such as 3.1234567 and two separators and a newline.
        WriteFormat::Tab | WriteFormat::Space => 34 * ratings,
    }
}
