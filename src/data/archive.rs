//! Compressed and archived inputs: gzip and single-file zip are read; other archives and
//! well-known binary formats are named, so they are never misread as rating records.

use super::text::binary_record;
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Signatures of containers gpumf does not read, with what to do instead.
const UNREAD: &[(&[u8], usize, &str)] = &[
    (b"BZh", 0, "a bzip2 archive; unpack it first (bunzip2 -k FILE)"),
    (b"\xFD7zXZ\x00", 0, "an xz archive; unpack it first (unxz -k FILE)"),
    (b"\x28\xB5\x2F\xFD", 0, "a zstd archive; unpack it first (unzstd FILE)"),
    (b"7z\xBC\xAF\x27\x1C", 0, "a 7-Zip archive; unpack it first (7z x FILE)"),
    (b"Rar!\x1A\x07", 0, "a RAR archive; unpack it first (unrar x FILE)"),
    (b"ustar", 257, "a tar archive; unpack it first (tar xf FILE) and give one of its files"),
    (b"MATLAB", 0, "a MATLAB .mat file, not ratings; export the matrix as text (e.g. writematrix) first"),
    (b"\x89HDF\r\n\x1a\n", 0, "an HDF5 file, not ratings; export the ratings as text first"),
    (b"RDX2\n", 0, "an R data file, not ratings; write the ratings as CSV from R first"),
    (b"RDX3\n", 0, "an R data file, not ratings; write the ratings as CSV from R first"),
    (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 0, "an Excel workbook (.xls); save the sheet as CSV first"),
    (b"PAR1", 0, "a Parquet file; write the ratings as CSV first"),
    (b"\x93NUMPY", 0, "a NumPy .npy file; write the ratings as text (numpy.savetxt) first"),
    (b"%PDF", 0, "a PDF document, not ratings"),
];

/// Whether a file starting with `head` is gzip or a zip archive (read only whole, unpacked).
pub(super) fn is_packed(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b]) || head.starts_with(b"PK\x03\x04")
}

/// The most bytes a reader may hold: `limit` (`--memory`) when given, else the memory
/// available; `None` where the platform says nothing and no limit was given.
pub fn memory_cap(limit: Option<u64>) -> Option<u64> {
    limit.or_else(crate::resources::available_memory)
}

/// The error for an input that would hold more than `cap` bytes: `how` says how it was found.
fn too_large(path: &Path, cap: u64, how: &str) -> Error {
    // A pipe's cache cannot go beside it.
    let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
    Error::TooLarge(format!(
        "{}: {how} more than the {} of memory a reader may hold (the memory available, or --memory); train with --memory SIZE{} to read it piece by piece into blocks on disk",
        path.display(),
        crate::resources::human_bytes(cap),
        if regular { "" } else { " --cache-dir DIR" }
    ))
}

/// Reads at most `cap` bytes of `reader` (`None`: all of it), else the error `over` gives.
fn read_capped(mut reader: impl Read, cap: Option<u64>, over: impl FnOnce() -> Error, fault: impl FnOnce(std::io::Error) -> Error) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match cap {
        None => reader.read_to_end(&mut out).map(drop).map_err(fault)?,
        Some(cap) => {
            reader.take(cap.saturating_add(1)).read_to_end(&mut out).map_err(fault)?;
            if out.len() as u64 > cap {
                return Err(over());
            }
        }
    }
    Ok(out)
}

/// Bytes read from a device or pipe before the rest: if they are all zero, or noise that is
/// neither text nor rating records, the input is no file of ratings (it is /dev/zero or
/// /dev/urandom, most likely), and reading on would only fill memory.
const PROBE: usize = 1 << 16;

/// Reads the first [`PROBE`] bytes of a device or pipe and refuses it if they are all zero or
/// noise ([`is_noise`]); else returns them, to be read before the rest (a pipe cannot be
/// rewound).
fn refuse_endless_junk(path: &Path, file: &mut std::fs::File) -> Result<Vec<u8>> {
    let mut head = vec![0u8; PROBE];
    let got = read_fully(file, &mut head).map_err(|e| Error::io(path, e))?;
    let refuse = |what: &str| Err(Error::Format { path: path.into(), message: format!("not a regular file, and its first 64 KiB are {what}, not ratings") });
    if got == head.len() && head.iter().all(|&b| b == 0) {
        return refuse("all zero bytes: a device such as /dev/zero");
    }
    if got == head.len() && is_noise(&head) {
        return refuse("neither text nor rating records: random bytes, from a device such as /dev/urandom");
    }
    head.truncate(got);
    Ok(head)
}

/// Whether `head` is neither text (it holds a NUL byte), a packed file, nor records of
/// ratings: most of its 12-byte records would name a negative id or a rating that is no
/// number (random bytes: three in four; rating records: none, or a few skipped bad ones).
fn is_noise(head: &[u8]) -> bool {
    let packed = is_packed(head) || unread_container(head).is_some();
    let bad = |b: &[u8]| {
        let (user, item, rating) = binary_record(b);
        user < 0 || item < 0 || !rating.is_finite()
    };
    let records = head.len() / 12;
    !packed && head.contains(&0) && head.chunks_exact(12).filter(|b| bad(b)).count() * 2 > records
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(super) fn read_fully(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads `path`, unpacking gzip (any number of members) and a zip that holds one file, holding
/// at most `cap` bytes (packed and unpacked): a file larger than that, a device or pipe that
/// goes on (such as /dev/zero), or a compressed file that unpacks to more, is an error naming
/// it before memory runs out.
pub fn read_unpacked(path: &Path, cap: Option<u64>) -> Result<Vec<u8>> {
    read_unpacked_checking(path, cap, &|_| Ok(()))
}

/// [`read_unpacked`], with `check_head` run on the first 64 KiB of a device or pipe that goes
/// on past them, before the rest is read: a stream whose start already fails is refused at
/// once rather than after all of it.
pub fn read_unpacked_checking(path: &Path, cap: Option<u64>, check_head: &dyn Fn(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if let (true, Some(cap)) = (meta.is_file(), cap) {
        if meta.len() > cap {
            return Err(too_large(path, cap, &format!("its {} are", crate::resources::human_bytes(meta.len()))));
        }
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let probed = if meta.is_file() { Vec::new() } else { refuse_endless_junk(path, &mut file)? };
    if probed.len() == PROBE {
        check_head(&probed)?;
    }
    let how = if meta.is_file() { "it grew while being read, to" } else { "it is not a regular file (a device or a pipe) and gave" };
    let raw = read_capped(std::io::Cursor::new(probed).chain(file), cap, || too_large(path, cap.unwrap_or(0), how), |e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let corrupt = |e: std::io::Error| Error::Format { path: path.into(), message: format!("gzip data is corrupt or truncated: {e}") };
        read_capped(flate2::read::MultiGzDecoder::new(&raw[..]), cap, || too_large(path, cap.unwrap_or(0), "it unpacks to"), corrupt)?
    } else if raw.starts_with(b"PK\x03\x04") || raw.starts_with(b"PK\x05\x06") {
        unzip_single(&raw, cap).map_err(|message| Error::Format { path: path.into(), message })?
    } else {
        raw
    };
    if let Some(what) = unread_container(&bytes) {
        return Err(Error::Format { path: path.into(), message: format!("this is {what}") });
    }
    Ok(bytes)
}

/// What an unreadable container is, if `bytes` start like one.
pub fn unread_container(bytes: &[u8]) -> Option<&'static str> {
    UNREAD.iter().find(|(magic, at, _)| bytes.get(*at..*at + magic.len()) == Some(*magic)).map(|(_, _, what)| *what)
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// One entry of a zip's central directory.
struct ZipEntry {
    name: String,
    method: usize,
    crc: u32,
    compressed: usize,
    size: usize,
    local_header: usize,
}

/// The files a zip archive's central directory lists (folders and macOS `__MACOSX/` metadata
/// aside), from its end-of-directory record at `end`.
fn zip_directory(zip: &[u8], end: usize) -> std::result::Result<Vec<ZipEntry>, String> {
    let corrupt = || "a zip archive whose directory is corrupt or truncated".to_string();
    let count = u16_at(zip, end + 10).ok_or_else(corrupt)?;
    let mut at = u32_at(zip, end + 16).ok_or_else(corrupt)? as usize;
    if at == u32::MAX as usize || count == u16::MAX as usize {
        return Err("a zip64 archive (over 4 GiB); unpack it first (unzip FILE)".into());
    }
    let mut files = Vec::new();
    for _ in 0..count {
        if zip.get(at..at + 4) != Some(b"PK\x01\x02") {
            return Err(corrupt());
        }
        let name_len = u16_at(zip, at + 28).ok_or_else(corrupt)?;
        let skip = name_len + u16_at(zip, at + 30).ok_or_else(corrupt)? + u16_at(zip, at + 32).ok_or_else(corrupt)?;
        let name = String::from_utf8_lossy(zip.get(at + 46..at + 46 + name_len).ok_or_else(corrupt)?).into_owned();
        let entry = ZipEntry {
            method: u16_at(zip, at + 10).ok_or_else(corrupt)?,
            crc: u32_at(zip, at + 16).ok_or_else(corrupt)?,
            compressed: u32_at(zip, at + 20).ok_or_else(corrupt)? as usize,
            size: u32_at(zip, at + 24).ok_or_else(corrupt)? as usize,
            local_header: u32_at(zip, at + 42).ok_or_else(corrupt)? as usize,
            name,
        };
        if !entry.name.ends_with('/') && !entry.name.starts_with("__MACOSX/") {
            files.push(entry);
        }
        at += 46 + skip;
    }
    Ok(files)
}

/// The contents of a zip archive's one file (folders and macOS `__MACOSX/` metadata aside).
fn unzip_single(zip: &[u8], cap: Option<u64>) -> std::result::Result<Vec<u8>, String> {
    let corrupt = || "a zip archive whose directory is corrupt or truncated".to_string();
    // The end-of-directory record sits in the last 22 + 65,535 bytes.
    let search_from = zip.len().saturating_sub(22 + 65_535);
    let end = (search_from..zip.len().saturating_sub(21)).rev().find(|&i| zip[i..].starts_with(b"PK\x05\x06")).ok_or_else(corrupt)?;
    let mut files = zip_directory(zip, end)?;
    if files.iter().any(|f| f.name == "[Content_Types].xml") && files.iter().any(|f| f.name.starts_with("xl/")) {
        return Err("an Excel workbook (.xlsx); save the sheet as CSV first".into());
    }
    let file = match files.len() {
        1 => files.pop().expect("one"),
        0 => return Err("a zip archive with no files in it".into()),
        n => {
            let names: Vec<&str> = files.iter().take(5).map(|f| f.name.as_str()).collect();
            return Err(format!("a zip archive of {n} files ({}{}); unpack it (unzip FILE) and give the ratings file", names.join(", "), if n > 5 { ", …" } else { "" }));
        }
    };
    let local = file.local_header;
    if zip.get(local..local + 4) != Some(b"PK\x03\x04") {
        return Err(corrupt());
    }
    let data_start = local + 30 + u16_at(zip, local + 26).ok_or_else(corrupt)? + u16_at(zip, local + 28).ok_or_else(corrupt)?;
    let data = zip.get(data_start..data_start + file.compressed).ok_or_else(corrupt)?;
    if cap.is_some_and(|cap| file.size as u64 > cap) {
        return Err(format!("zip member {} unpacks to {}, more than the memory a reader may hold (the memory available, or --memory); unpack it first", file.name, crate::resources::human_bytes(file.size as u64)));
    }
    let mut out = Vec::with_capacity(file.size);
    match file.method {
        0 => out.extend_from_slice(data),
        8 => {
            // Never more than the directory declared: a lying archive is corrupt, not a flood.
            flate2::read::DeflateDecoder::new(data).take(file.size as u64 + 1).read_to_end(&mut out).map_err(|e| format!("zip member {} is corrupt: {e}", file.name))?;
        }
        m => return Err(format!("zip member {} is compressed with method {m}, which gpumf does not read; unpack it first (unzip FILE)", file.name)),
    }
    if crc32fast::hash(&out) != file.crc || out.len() != file.size {
        return Err(format!("zip member {} fails its checksum: the archive is corrupt", file.name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_told_from_text_records_and_packed_files() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let random: Vec<u8> = (0..PROBE).map(|_| rng.random()).collect();
        assert!(is_noise(&random), "random bytes");
        let record = |n: usize| [(n % 1000) as i32, (n % 77) as i32].iter().flat_map(|x| x.to_le_bytes()).chain((1.0 + (n % 5) as f32).to_le_bytes()).collect::<Vec<u8>>();
        let mut records: Vec<u8> = (0..PROBE / 12 + 1).flat_map(record).take(PROBE).collect();
        assert!(!is_noise(&records), "rating records");
        // A few bad records among good ones (--skip-bad-lines' business) are still records.
        records[..12 * 100].copy_from_slice(&random[..12 * 100]);
        assert!(!is_noise(&records), "rating records with some bad ones");
        let text: Vec<u8> = (0..).flat_map(|n: u32| format!("{},{},{}\n", n % 611, n % 9000, 1 + n % 5).into_bytes()).take(PROBE).collect();
        assert!(!is_noise(&text), "text");
        let gzip = [&[0x1f, 0x8b][..], &random[2..]].concat();
        assert!(!is_noise(&gzip), "a gzip stream");
    }

    /// A minimal zip writer for the tests: stored (method 0) or deflated (method 8) members.
    pub(crate) fn zip(files: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
        let (mut out, mut directory) = (Vec::new(), Vec::new());
        for (name, data) in files {
            let body = if deflate {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                std::io::Write::write_all(&mut e, data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let crc = crc32fast::hash(data);
            let method: u16 = if deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            out.extend(b"PK\x03\x04");
            out.extend(20u16.to_le_bytes());
            out.extend([0u8; 2]);
            out.extend(method.to_le_bytes());
            out.extend([0u8; 4]);
            out.extend(crc.to_le_bytes());
            out.extend((body.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(&body);
            directory.extend(b"PK\x01\x02");
            directory.extend([20u8, 0, 20, 0, 0, 0]);
            directory.extend(method.to_le_bytes());
            directory.extend([0u8; 4]);
            directory.extend(crc.to_le_bytes());
            directory.extend((body.len() as u32).to_le_bytes());
            directory.extend((data.len() as u32).to_le_bytes());
            directory.extend((name.len() as u16).to_le_bytes());
            directory.extend([0u8; 12]);
            directory.extend(offset.to_le_bytes());
            directory.extend(name.as_bytes());
        }
        let start = out.len() as u32;
        out.extend(&directory);
        out.extend(b"PK\x05\x06");
        out.extend([0u8; 4]);
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((directory.len() as u32).to_le_bytes());
        out.extend(start.to_le_bytes());
        out.extend([0u8; 2]);
        out
    }

    #[test]
    fn a_single_file_zip_is_read_and_other_archives_are_named() {
        let text: &[u8] = b"1\t2\t3.5\n2\t3\t4\n";
        for deflate in [false, true] {
            assert_eq!(unzip_single(&zip(&[("dir/", b""), ("r.tsv", text)], deflate), None).unwrap(), text);
        }
        let two = unzip_single(&zip(&[("a.csv", text), ("b.csv", text)], true), None).unwrap_err();
        assert!(two.contains("2 files") && two.contains("a.csv"), "{two}");
        let xlsx = unzip_single(&zip(&[("[Content_Types].xml", b"x"), ("xl/workbook.xml", b"y")], true), None).unwrap_err();
        assert!(xlsx.contains("Excel"), "{xlsx}");
        let mut bad = zip(&[("r.tsv", text)], false);
        bad[35] ^= 1; // a byte of the member's data
        assert!(unzip_single(&bad, None).unwrap_err().contains("checksum"));
        assert!(unread_container(b"BZh91AY&SY").unwrap().contains("bzip2"));
        assert!(unread_container(b"MATLAB 5.0 MAT-file").unwrap().contains("MATLAB"));
        assert!(unread_container(b"1\t2\t3\n").is_none());
        // Through the loader, a zipped rating file trains like the file itself.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ratings.zip");
        std::fs::write(&path, zip(&[("ratings.tsv", text)], true)).unwrap();
        let loaded = crate::data::load_ratings(&path, Default::default()).unwrap();
        assert_eq!(loaded.ratings.len(), 2);
    }
}
