//! The model file: a little-endian header, the id maps, biases and factors, each user's
//! training items, and a CRC-32 of everything before it, so that corruption is an error
//! rather than silent nonsense.
//!
//! Version 5 (written now):
//! ```text
//! magic "GPUMF\0\0\x05"
//! u64 users m, u64 items n, u64 rank k, u64 biases (0|1), u64 seen-items bytes s (0: none)
//! u64 loss, u64 link, u64 flags (bit 0: non-negative factors; bit 1: binary labels follow)
//! u64 one-class flags (bit 0: one-class settings follow; bit 1: log confidence; bit 2:
//!     frequency-scaled regularisation)
//! u64 id-label bytes l (16 where every id is a number: the two counts, 0)
//! f32 mean, f32 lowest rating, f32 highest rating, f32 L1, f32 negative label, f32 positive label
//! f32 unobserved weight, f32 alpha, f32 epsilon, f32 reg (the one-class loss's, for fold-in)
//! u64 × m user ids, u64 × n item ids, f32 × m user biases, f32 × n item biases
//! f32 × m·k P (row-major), f32 × n·k Q, s bytes of seen items (see seen.rs)
//! l bytes of id labels: for the users, then the items, u64 count, then per labelled id
//!     u32 row, u32 length, its UTF-8 text (whose key, crate::data::IdToken, is the row's id)
//! u32 CRC-32 of every byte from the magic on
//! ```
//! The loss and link codes are [`LOSS_CODES`]'s and [`Link`]'s. Version 4 had no id labels
//! (ids were numbers only). Version 3 had no one-class
//! settings (it had no one-class loss). Version 2 had no loss, link or
//! constraints (it loads as the squared error), version 1 no seen items and no checksum either;
//! both still load, version 1 with a note.

use super::{Model, SeenItems};
use crate::data::IdMap;
use crate::error::{Error, Result};
use super::OneClassFit;
use crate::objective::{BinaryLabels, Confidence, Loss, OneClass};
use ndarray::Array2;
use std::io::Write;
use std::path::Path;

const MAGIC_V1: &[u8; 8] = b"GPUMF\0\0\x01";
const MAGIC_V2: &[u8; 8] = b"GPUMF\0\0\x02";
const MAGIC_V3: &[u8; 8] = b"GPUMF\0\0\x03";
const MAGIC_V4: &[u8; 8] = b"GPUMF\0\0\x04";
const MAGIC_V5: &[u8; 8] = b"GPUMF\0\0\x05";
/// The version [`Model::save`] writes.
pub const MODEL_FORMAT_VERSION: u8 = 5;

/// Each loss's code in the file. Fixed: a code is never reused.
const LOSS_CODES: [(Loss, u64); 9] =
    [(Loss::Squared, 0), (Loss::Absolute, 1), (Loss::Kl, 2), (Loss::Logistic, 3), (Loss::Hinge, 4), (Loss::SquaredHinge, 5), (Loss::Ials, 6), (Loss::Bpr, 7), (Loss::BprColumns, 8)];

/// What a score becomes when predicted, as recorded in the file (the loss fixes it; it is
/// written so that a reader need not know every loss, and checked against the loss on load).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// A rating clipped to the training range.
    Clipped = 0,
    /// The probability of the positive label.
    Probability = 1,
    /// The margin, whose sign is the class.
    Margin = 2,
    /// The score as it is, a preference that only orders items (one-class data).
    Score = 3,
}

impl Link {
    fn of(loss: Loss) -> Link {
        match loss.link_name() {
            "probability" => Link::Probability,
            "margin" => Link::Margin,
            "score" => Link::Score,
            _ => Link::Clipped,
        }
    }
}

fn loss_code(loss: Loss) -> u64 {
    LOSS_CODES.iter().find(|(l, _)| *l == loss).map_or(0, |(_, c)| *c)
}
/// The largest rank a model file may declare (as `Params::validate` allows).
const MAX_RANK: u64 = 4096;

/// What loading learnt about the file itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelFileInfo {
    pub version: u8,
    /// Whether the payload was checked against a stored checksum.
    pub checksummed: bool,
}

impl ModelFileInfo {
    /// A line for people about a file of an older version, if it is one.
    pub fn note(&self) -> Option<String> {
        (!self.checksummed).then(|| {
            format!(
                "note: this model file is format version {} (written by an older gpumf): it has no checksum, so corruption cannot be detected, and no record of each user's training items, so `predict --user` cannot leave them out; train and save it again to upgrade",
                self.version
            )
        })
    }
}

/// A model file's header, checked: every value before anything is allocated by it.
struct Header {
    version: u8,
    /// Bytes of the header.
    len: usize,
    users: u64,
    items: u64,
    rank: u64,
    biases: bool,
    seen_len: u64,
    /// Bytes of id labels (version 5).
    labels_len: u64,
    mean: f32,
    range: (f32, f32),
    objective: (Loss, Option<BinaryLabels>, bool, f32),
    one_class: Option<OneClassFit>,
    /// Bytes the whole file takes, by the header.
    file_len: u64,
}

/// The longest header of any version.
const MAX_HEADER: usize = 8 + 8 * 10 + 4 * 10;

/// Reads a model file: its header first, checked, then exactly the bytes it says follow (a file
/// that goes on past them, such as a device, is refused before more is read), checked against
/// its CRC-32.
fn read_file(path: &Path) -> Result<(Header, Vec<u8>)> {
    use std::io::Read;
    let err = |message: String| Error::ModelFile { path: path.into(), message };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    let mut head = Vec::with_capacity(MAX_HEADER);
    let mut reader = std::io::BufReader::new(file);
    (&mut reader).take(MAX_HEADER as u64).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    let header = parse_header(&head).map_err(err)?;
    let described = format!("{} users, {} items, rank {}, {} bytes of seen items: {} bytes in all", header.users, header.items, header.rank, header.seen_len, header.file_len);
    if let Some(size) = size.filter(|&size| size != header.file_len) {
        return Err(err(format!("{size} bytes long, {} than its header says ({described}): truncated or corrupt", if size < header.file_len { "shorter" } else { "longer" })));
    }
    crate::resources::ensure_memory(header.file_len, &format!("{}: loading the model ({described})", path.display()), |_| "is it the model file meant?".into())?;
    let mut bytes = head;
    let rest = header.file_len.saturating_sub(bytes.len() as u64);
    bytes.reserve(rest.min(size.unwrap_or(0)) as usize);
    (&mut reader).take(rest + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 != header.file_len {
        let how = if (bytes.len() as u64) < header.file_len { format!("{} bytes long, shorter", bytes.len()) } else { "longer".to_string() };
        return Err(err(format!("{how} than its header says ({described}): truncated, corrupt, or not a file")));
    }
    if header.version >= 2 {
        let (body, stored) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(stored.try_into().expect("4 bytes")) {
            return Err(err("checksum mismatch: the file is corrupt (changed since it was saved); train and save it again".into()));
        }
    }
    Ok((header, bytes))
}

/// The header at the start of `bytes`, or what is wrong with it.
fn parse_header(bytes: &[u8]) -> std::result::Result<Header, String> {
    if bytes.len() < 8 {
        return Err("too short to be a gpumf model".into());
    }
    let version = match &bytes[..8] {
        m if m == MAGIC_V5 => 5u8,
        m if m == MAGIC_V4 => 4,
        m if m == MAGIC_V3 => 3,
        m if m == MAGIC_V2 => 2,
        m if m == MAGIC_V1 => 1,
        m if m.starts_with(b"GPUMF\0\0") => return Err(format!("format version {} is newer than this gpumf reads (up to {MODEL_FORMAT_VERSION}): update gpumf", m[7])),
        _ => return Err("not a gpumf model file (bad magic bytes)".into()),
    };
    let (words, floats) = match version {
        5 => (10, 10),
        4 => (9, 10),
        3 => (8, 6),
        2 => (5, 3),
        _ => (4, 3),
    };
    let len = 8 + 8 * words + 4 * floats;
    if bytes.len() < len {
        return Err(format!("truncated: {} bytes, shorter than the header", bytes.len()));
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"));
    let f32_at = |i: usize| f32::from_le_bytes(bytes[8 + 8 * words + 4 * i..][..4].try_into().expect("4 bytes"));
    let (m, n, k, biases) = (u64_at(0), u64_at(1), u64_at(2), u64_at(3));
    let seen_len = if version >= 2 { u64_at(4) } else { 0 };
    if k == 0 || k > MAX_RANK {
        return Err(format!("header declares rank {k}, outside 1..={MAX_RANK}"));
    }
    if m > u32::MAX as u64 - 1 || n > u32::MAX as u64 - 1 {
        return Err(format!("header declares {m} users and {n} items; at most {} each are supported", u32::MAX - 1));
    }
    if biases > 1 {
        return Err(format!("header's biases flag is {biases}, expected 0 or 1"));
    }
    let (mean, lo, hi) = (f32_at(0), f32_at(1), f32_at(2));
    if !mean.is_finite() {
        return Err(format!("header's global mean is {mean}, not a finite number"));
    }
    if lo.is_nan() || hi.is_nan() || lo > hi {
        return Err(format!("header's rating range {lo}..{hi} is not a range"));
    }
    let objective = if version >= 3 { read_objective(u64_at(5), u64_at(6), u64_at(7), [f32_at(3), f32_at(4), f32_at(5)])? } else { (Loss::Squared, None, false, 0.0) };
    let one_class = if version >= 4 { read_one_class(u64_at(8), [f32_at(6), f32_at(7), f32_at(8), f32_at(9)])? } else { None };
    if one_class.is_some() != (objective.0 == Loss::Ials) {
        return Err(format!("header's one-class settings do not go with its loss {}", crate::choice::Choice::name(objective.0)));
    }
    let labels_len = if version >= 5 { u64_at(9) } else { 0 };
    let rows = m + n;
    let file_len = (len as u64)
        .checked_add(rows * 12)
        .and_then(|x| x.checked_add(rows.checked_mul(k)?.checked_mul(4)?))
        .and_then(|x| x.checked_add(seen_len)?.checked_add(labels_len))
        .and_then(|x| x.checked_add(if version >= 2 { 4 } else { 0 }));
    let file_len = file_len.ok_or_else(|| format!("header's sizes ({m} users, {n} items, rank {k}, {seen_len} bytes of seen items, {labels_len} of labels) are impossible: corrupt"))?;
    Ok(Header { version, len, users: m, items: n, rank: k, biases: biases != 0, seen_len, labels_len, mean, range: (lo, hi), objective, one_class, file_len })
}

/// The one-class settings of a version-4 header, checked.
fn read_one_class(flags: u64, [unobserved_weight, alpha, epsilon, reg]: [f32; 4]) -> std::result::Result<Option<OneClassFit>, String> {
    if flags > 7 {
        return Err(format!("header's one-class flags {flags:#x} are not gpumf's"));
    }
    if flags & 1 == 0 {
        return Ok(None);
    }
    let confidence = if flags & 2 != 0 { Confidence::Log } else { Confidence::Linear };
    let settings = OneClass { unobserved_weight, confidence, alpha, epsilon, cg_steps: OneClass::default().cg_steps };
    settings.validate().map_err(|e| format!("header's one-class settings: {e}"))?;
    if !(reg.is_finite() && reg >= 0.0) {
        return Err(format!("header's one-class regularisation {reg} is not a non-negative number"));
    }
    Ok(Some(OneClassFit { settings, reg, frequency_reg: flags & 4 != 0 }))
}

/// The loss, labels and constraints of a version-3 header, checked.
fn read_objective(code: u64, link: u64, flags: u64, [l1, negative, positive]: [f32; 3]) -> std::result::Result<(Loss, Option<BinaryLabels>, bool, f32), String> {
    let loss = LOSS_CODES.iter().find(|(_, c)| *c == code).map(|(l, _)| *l).ok_or_else(|| format!("header names loss {code}, which this gpumf does not know (a newer file?)"))?;
    if link != Link::of(loss) as u64 {
        return Err(format!("header's link {link} does not go with its loss {}", crate::choice::Choice::name(loss)));
    }
    if flags > 3 {
        return Err(format!("header's flags {flags:#x} are not gpumf's"));
    }
    if !(l1.is_finite() && l1 >= 0.0) {
        return Err(format!("header's L1 regularisation {l1} is not a non-negative number"));
    }
    let labels = (flags & 2 != 0).then_some(BinaryLabels { negative, positive });
    if labels.is_some() != loss.is_binary() || labels.is_some_and(|l| l.negative >= l.positive || l.negative.is_nan() || l.positive.is_nan()) {
        return Err(format!("header's binary labels ({negative}, {positive}) do not go with its loss {}", crate::choice::Choice::name(loss)));
    }
    Ok((loss, labels, flags & 1 != 0, l1))
}

/// The users' and items' id maps from their tables and the file's id labels (all of `labels`).
fn id_maps(users: Vec<u64>, items: Vec<u64>, labels: &mut &[u8]) -> std::result::Result<(IdMap, IdMap), String> {
    let (m, n) = (users.len(), items.len());
    let (users, items) = (IdMap::from_externals(users), IdMap::from_externals(items));
    if users.distinct() != m || items.distinct() != n {
        return Err("the id table repeats a user or item id".into());
    }
    let users = users.with_labels_from(labels).map_err(|e| format!("user labels: {e}"))?;
    let items = items.with_labels_from(labels).map_err(|e| format!("item labels: {e}"))?;
    if !labels.is_empty() {
        return Err(format!("{} bytes after the id labels", labels.len()));
    }
    Ok((users, items))
}

/// A writer that keeps a CRC-32 of what passes through it.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What Python's `MF.save` appends to a model file's name for the labels it numbered (ids
/// given in memory that were not numbers); `gpumf.load` reads them back onto that model.
pub const LABELS_BESIDE: &str = ".labels.npz";

impl Model {
    /// Writes the model to `path`, checked before and written whole or not at all (see
    /// [`crate::output::write_atomically`]). Refuses to replace an existing file unless
    /// `overwrite`. Labels left beside the path ([`LABELS_BESIDE`]) belonged to the model it
    /// replaced, and Python would put them on this one: they are removed once it is in place.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        self.write(path, overwrite)?;
        let mut beside = path.as_os_str().to_owned();
        beside.push(LABELS_BESIDE);
        match std::fs::remove_file(&beside) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::Output { path: beside.into(), message: format!("cannot remove the labels of the model this one replaced: {e}") })
            }
            _ => Ok(()),
        }
    }

    fn write(&self, path: &Path, overwrite: bool) -> Result<()> {
        crate::output::write_atomically(path, overwrite, |w| {
            let mut w = Checksummed { inner: w, crc: crc32fast::Hasher::new() };
            w.write_all(MAGIC_V5)?;
            let seen: &[u8] = self.seen.as_ref().map_or(&[], |s| s.as_bytes());
            let id_labels = [&self.users, &self.items].map(IdMap::labels_as_bytes).concat();
            let (m, n, k) = (self.users.len() as u64, self.items.len() as u64, self.rank() as u64);
            let flags = self.nonneg as u64 | (self.labels.is_some() as u64) << 1;
            let one_class = self.one_class.map_or(0, |f| 1 | ((f.settings.confidence == Confidence::Log) as u64) << 1 | (f.frequency_reg as u64) << 2);
            for v in [m, n, k, self.biases as u64, seen.len() as u64, loss_code(self.loss), Link::of(self.loss) as u64, flags, one_class, id_labels.len() as u64] {
                w.write_all(&v.to_le_bytes())?;
            }
            let labels = self.labels.unwrap_or(BinaryLabels { negative: 0.0, positive: 0.0 });
            let fit = self.one_class.unwrap_or(OneClassFit { settings: OneClass::default(), reg: 0.0, frequency_reg: false });
            let s = fit.settings;
            for v in [self.mean, self.rating_range.0, self.rating_range.1, self.l1, labels.negative, labels.positive, s.unobserved_weight, s.alpha, s.epsilon, fit.reg] {
                w.write_all(&v.to_le_bytes())?;
            }
            for ids in [self.users.externals(), self.items.externals()] {
                w.write_all(bytemuck::cast_slice(ids))?;
            }
            w.write_all(bytemuck::cast_slice(&self.user_bias))?;
            w.write_all(bytemuck::cast_slice(&self.item_bias))?;
            w.write_all(bytemuck::cast_slice(self.user_factors.as_slice().expect("row-major")))?;
            w.write_all(bytemuck::cast_slice(self.item_factors.as_slice().expect("row-major")))?;
            w.write_all(seen)?;
            w.write_all(&id_labels)?;
            let crc = w.crc.finalize();
            w.inner.write_all(&crc.to_le_bytes())
        })
    }

    /// Reads a model written by [`Model::save`] (or by gpumf before checksums).
    pub fn load(path: &Path) -> Result<Model> {
        Self::load_with_info(path).map(|(model, _)| model)
    }

    /// Reads a model and says what kind of file it was. Every header value is checked before
    /// anything is allocated, the checksum before any value is used.
    pub fn load_with_info(path: &Path) -> Result<(Model, ModelFileInfo)> {
        let err = |message: String| Error::ModelFile { path: path.into(), message };
        if path.is_dir() {
            return Err(Error::IsDirectory { path: path.into() });
        }
        let (header, bytes) = read_file(path)?;
        let (m, n, k) = (header.users as usize, header.items as usize, header.rank as usize);
        let mut at = header.len;
        let mut take = |len: usize| {
            let slice = &bytes[at..at + len];
            at += len;
            slice
        };
        let floats = |b: &[u8]| -> Vec<f32> { b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect() };
        let ids = |b: &[u8]| -> Vec<u64> { b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect() };
        let users = ids(take(8 * m));
        let items = ids(take(8 * n));
        let user_bias = floats(take(4 * m));
        let item_bias = floats(take(4 * n));
        let p = floats(take(4 * m * k));
        let q = floats(take(4 * n * k));
        let seen_bytes = take(header.seen_len as usize).to_vec();
        let mut labels = take(header.labels_len as usize);
        for (what, values) in [("user biases", &user_bias), ("item biases", &item_bias), ("user factors", &p), ("item factors", &q)] {
            if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                return Err(err(format!("{what} hold a non-finite value ({}) at position {at}: corrupt, or saved from a diverged run", values[at])));
            }
        }
        let (users, items) = id_maps(users, items, &mut labels).map_err(|e| err(format!("{e}: corrupt")))?;
        let seen = match header.seen_len {
            0 => None,
            _ => Some(SeenItems::from_bytes(seen_bytes, m, n).map_err(|e| err(format!("{e}: corrupt")))?),
        };
        let (loss, labels, nonneg, l1) = header.objective;
        let model = Model {
            loss,
            labels,
            nonneg,
            l1,
            mean: header.mean,
            biases: header.biases,
            user_bias,
            item_bias,
            user_factors: Array2::from_shape_vec((m, k), p).expect("sized above"),
            item_factors: Array2::from_shape_vec((n, k), q).expect("sized above"),
            rating_range: header.range,
            users,
            items,
            seen,
            one_class: header.one_class,
        };
        Ok((model, ModelFileInfo { version: header.version, checksummed: header.version >= 2 }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RatingSet;
use crate::problem::Problem;
    use crate::model::Params;

    fn model() -> Model {
        let set = RatingSet::from_triplets([(10, 1, 4.0), (10, 2, 3.0), (11, 1, 5.0), (12, 3, 1.0)]);
        let problem = Problem::new(set, None);
        let mut model = Model::init(&problem, &Params { rank: 3, ..Params::default() }, None);
        model.record_seen(&problem);
        model
    }

    /// Writes a version-1 file as gpumf did before checksums.
    fn write_v1(model: &Model, path: &Path) {
        let mut out = MAGIC_V1.to_vec();
        for v in [model.users.len(), model.items.len(), model.rank(), model.biases as usize] {
            out.extend((v as u64).to_le_bytes());
        }
        for v in [model.mean, model.rating_range.0, model.rating_range.1] {
            out.extend(v.to_le_bytes());
        }
        out.extend(bytemuck::cast_slice(model.users.externals()));
        out.extend(bytemuck::cast_slice(model.items.externals()));
        out.extend(bytemuck::cast_slice(&model.user_bias));
        out.extend(bytemuck::cast_slice(&model.item_bias));
        out.extend(bytemuck::cast_slice(model.user_factors.as_slice().unwrap()));
        out.extend(bytemuck::cast_slice(model.item_factors.as_slice().unwrap()));
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn a_saved_model_loads_back_equal_with_its_seen_items() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gpumf");
        let m = model();
        m.save(&path, false).unwrap();
        let (back, info) = Model::load_with_info(&path).unwrap();
        assert_eq!(back, m);
        assert_eq!(info, ModelFileInfo { version: 5, checksummed: true });
        assert!(info.note().is_none());
    }

    /// A model of labelled ids (and one numbered id beside them).
    fn labelled() -> Model {
        let bytes = b"A1B2,B0001,4\nA1B2,B0002,3\n77,B0001,5\nhans m\xc3\xbcller,B0003,1\n";
        let set = crate::data::parse_ratings(bytes, Path::new("l.csv"), crate::data::LoadOptions::default()).unwrap().ratings;
        let problem = Problem::new(set, None);
        Model::init(&problem, &Params { rank: 3, ..Params::default() }, None)
    }

    #[test]
    fn a_model_of_labelled_ids_keeps_their_texts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gpumf");
        let m = labelled();
        m.save(&path, false).unwrap();
        let back = Model::load(&path).unwrap();
        assert_eq!(back, m);
        let shown = |ids: &IdMap| (0..ids.len() as u32).map(|i| ids.shown(i).to_string()).collect::<Vec<_>>();
        assert_eq!(shown(&back.users), ["A1B2", "77", "hans müller"]);
        assert_eq!(shown(&back.items), ["B0001", "B0002", "B0003"]);
        assert_eq!(back.users.external_id(1), 77, "a number keeps its own key beside labels");
        // A label section that names a row whose id is not its text's is corrupt (the CRC
        // recomputed, so only the label check stands in the way).
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == b"A1B2").unwrap();
        bytes[at + 3] = b'3';
        let n = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(e.contains("user labels: the label of row 0 is not that row's id: corrupt"), "{e}");
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gpumf");
        model().save(&path, false).unwrap();
        let good = std::fs::read(&path).unwrap();
        for at in 8..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(Model::load(&path).is_err(), "byte {at} flipped loaded");
        }
    }

    #[test]
    fn impossible_headers_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gpumf");
        let m = model();
        // Version 1 has no checksum, so its header values are what stands between a crafted
        // file and a panic.
        type Spoil = fn(&mut Model);
        let cases: [(&str, Spoil, &str); 3] = [
            ("NaN mean", |m| m.mean = f32::NAN, "mean"),
            ("inverted range", |m| m.rating_range = (5.0, 1.0), "not a range"),
            ("NaN factor", |m| m.user_factors[[0, 0]] = f32::NAN, "non-finite"),
        ];
        for (name, spoil, expected) in cases {
            let mut bad = m.clone();
            spoil(&mut bad);
            write_v1(&bad, &path);
            let e = Model::load(&path).unwrap_err().to_string();
            assert!(e.contains(expected), "{name}: {e}");
        }
        // Sizes crafted so that the size arithmetic would wrap.
        write_v1(&m, &path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..16].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
        bytes[24..32].copy_from_slice(&8u64.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(e.contains("users") && e.contains("at most"), "{e}");
        // A header that says more follows than does: refused by its size, before a read.
        write_v1(&m, &path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Model::load(&path).unwrap_err().to_string().contains("shorter than its header says"));
        std::fs::write(&path, [&bytes[..], b"xyz"].concat()).unwrap();
        assert!(Model::load(&path).unwrap_err().to_string().contains("longer than its header says"));
    }

    #[test]
    fn a_device_is_no_model_and_is_not_read_on() {
        #[cfg(unix)]
        for device in ["/dev/zero", "/dev/urandom"] {
            let e = Model::load(Path::new(device)).unwrap_err().to_string();
            assert!(e.contains("not a gpumf model") || e.contains("magic"), "{device}: {e}");
        }
    }

    #[test]
    fn version_2_files_load_as_the_squared_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.gpumf");
        let m = model();
        // A version-2 file: the v5 header less the loss, link, the flags and seven floats.
        std::fs::write(&path, older(&m, &path, 2, 5, 3)).unwrap();
        let (back, info) = Model::load_with_info(&path).unwrap();
        assert_eq!(info.version, 2);
        assert_eq!((back.loss, back.labels, back.nonneg, back.l1), (Loss::Squared, None, false, 0.0));
        assert_eq!(back.user_factors, m.user_factors);
    }

    /// `m` (whose ids are numbers) saved, then rewritten as version `version`: the first
    /// `words` and `floats` of the version-5 header, the payload less its id labels, and a new
    /// checksum.
    fn older(m: &Model, path: &Path, version: u8, words: usize, floats: usize) -> Vec<u8> {
        m.save(path, true).unwrap();
        let v5 = std::fs::read(path).unwrap();
        let labels = u64::from_le_bytes(v5[8 + 9 * 8..8 + 10 * 8].try_into().unwrap()) as usize;
        let mut old = b"GPUMF\0\0".to_vec();
        old.push(version);
        old.extend(&v5[8..8 + words * 8]);
        old.extend(&v5[8 + 10 * 8..8 + 10 * 8 + 4 * floats]);
        old.extend(&v5[8 + 10 * 8 + 40..v5.len() - 4 - labels]);
        let crc = crc32fast::hash(&old);
        old.extend(crc.to_le_bytes());
        old
    }

    #[test]
    fn version_3_files_load_and_one_class_settings_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.gpumf");
        let m = model();
        std::fs::write(&path, older(&m, &path, 3, 8, 6)).unwrap();
        let (back, info) = Model::load_with_info(&path).unwrap();
        assert_eq!((back, info.version), (m.clone(), 3));
        std::fs::write(&path, older(&m, &path, 4, 9, 10)).unwrap();
        let (back, info) = Model::load_with_info(&path).unwrap();
        assert_eq!((back, info.version), (m, 4));
        // A one-class model keeps what fold-in needs: its weights, confidence and λ.
        let set = RatingSet::from_triplets([(10, 1, 1.0), (10, 2, 3.0), (11, 1, 2.0)]);
        let settings = OneClass { unobserved_weight: 0.3, confidence: Confidence::Log, alpha: 2.5, epsilon: 0.5, cg_steps: 3 };
        let params = Params { rank: 2, one_class: settings, frequency_reg: false, ..Params::for_loss(Loss::Ials) };
        let one_class = Model::init(&Problem::new(set, None), &params, None);
        one_class.save(&path, true).unwrap();
        let back = Model::load(&path).unwrap();
        assert_eq!(back.one_class, Some(OneClassFit { settings, reg: params.reg, frequency_reg: false }));
        assert_eq!(back, one_class);
    }

    #[test]
    fn version_1_files_still_load_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.gpumf");
        let m = model();
        write_v1(&m, &path);
        let (back, info) = Model::load_with_info(&path).unwrap();
        assert_eq!(back, Model { seen: None, ..m });
        assert_eq!(info.version, 1);
        assert!(info.note().unwrap().contains("no checksum"));
    }
}
