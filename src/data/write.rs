//! Writing rating files: tab-separated text or cuMF_SGD's binary records, never over a file the
//! user already has unless asked, and never half-written.

use super::Rating;
use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// The formats gpumf writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteFormat {
    /// `user<TAB>item<TAB>rating` lines (MovieLens u.data style; LIBMF reads it with spaces).
    Tab,
    /// `user item rating` lines, LIBMF's text format.
    Space,
    /// cuMF_SGD's binary records {i32 user, i32 item, f32 rating}.
    Binary,
}

/// Writes `ratings` with their indices as ids, through a temporary file renamed into place.
pub fn write_ratings(path: &Path, ratings: &[Rating], format: WriteFormat, overwrite: bool) -> Result<()> {
    if path.exists() && !overwrite {
        return Err(Error::Format { path: path.into(), message: "already exists; not overwriting it (pass --force to replace it)".into() });
    }
    if format == WriteFormat::Binary && ratings.iter().any(|r| r.user > i32::MAX as u32 || r.item > i32::MAX as u32) {
        return Err(Error::Format { path: path.into(), message: "ids above 2^31 - 1 do not fit cuMF_SGD's int32 records".into() });
    }
    let tmp = path.with_extension("tmp-gpumf");
    let write = || -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
        match format {
            WriteFormat::Binary => w.write_all(bytemuck::cast_slice(ratings))?,
            WriteFormat::Tab | WriteFormat::Space => {
                let sep = if format == WriteFormat::Tab { '\t' } else { ' ' };
                for r in ratings {
                    writeln!(w, "{}{sep}{}{sep}{}", r.user, r.item, r.value)?;
                }
            }
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    let cannot = |e: std::io::Error| Error::Format { path: path.into(), message: format!("cannot write: {e}") };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(e));
    }
    std::fs::rename(&tmp, path).map_err(cannot)
}
