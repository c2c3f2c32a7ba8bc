//! A rating file read piece by piece, never whole: how a file larger than memory goes into
//! the block cache.

use super::archive::{is_packed, unread_container};
use super::lines::{long_line, parse_chunk, ChunkResult, Labels, Layout};
use super::load::{binarise, check_options, detect_format, refuse_columns};
use super::options::{Columns, Duplicates, Format, LoadOptions};
use super::text::{binary_record, count_lines, split_chunks};
use super::{IdMap, Rating};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::Path;

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
/// Matrix Market) and binary records, gzip unpacked as they are read; what needs the whole
/// file (zip, a dense matrix, a split column, a duplicates policy other than keep) is refused
/// by name.
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

/// Whether [`stream_ratings`] can read `path` with `options` twice, as a cluster's processes
/// do: a regular file (a pipe gives its bytes once), no flag that needs the whole file, and not
/// a zip archive (read whole; gzip is unpacked as it is read). A file that cannot be opened
/// counts as streamable, so that reading it gives the error.
pub fn streamable(path: &Path, options: &LoadOptions) -> bool {
    use std::io::Read;
    // Checked first: opening a pipe to look at its bytes would wait for a writer, and take them.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return false;
    }
    let mut head = [0u8; 4];
    let zip = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && is_packed(&head) && !is_gzip(&head);
    whole_file_flag(options).is_none() && !zip
}

/// The most bytes the ratings of `path` take in memory once loaded, where its size bounds
/// them: a regular file of s bytes holds at most s/6 ratings (`1 1 1` and a newline), which
/// take 24 bytes each while loaded and laid out, so 4·s. `None` where nothing does: a pipe or
/// device, or gzip (which may unpack to any size).
pub fn loaded_bytes_bound(path: &Path) -> Option<u64> {
    use std::io::Read;
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    let mut head = [0u8; 2];
    let gzip = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && is_gzip(&head);
    (!gzip).then(|| meta.len().saturating_mul(4))
}

/// A file read a piece at a time, gzip unpacked on the way: at most a regular file's size when
/// it was opened, and where the bytes have no such bound (a pipe or device, or what gzip
/// unpacks to) at most `cap` bytes (`LoadOptions::max_bytes`), so that an input that goes on
/// (/dev/zero) stops with an error rather than fill the disk.
struct Pieces<'a> {
    path: &'a Path,
    reader: Box<dyn std::io::Read + 'a>,
    gzip: bool,
    piece_bytes: usize,
    /// Bytes still to read at most, and, where reaching that is an error, what the input is.
    left: u64,
    capped: Option<&'static str>,
}

impl<'a> Pieces<'a> {
    fn open(path: &'a Path, piece_bytes: usize, cap: Option<u64>) -> Result<Pieces<'a>> {
        use std::io::Read;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::IsDirectory { path: path.into() });
        }
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // A pipe cannot be rewound: its first bytes are read once and put back in front.
        let mut magic = [0u8; 2];
        let got = super::archive::read_fully(&mut file, &mut magic).map_err(|e| Error::io(path, e))?;
        let head = std::io::Cursor::new(magic[..got].to_vec());
        let raw: Box<dyn Read> = if meta.is_file() { Box::new(head.chain(file.take(meta.len().saturating_sub(got as u64)))) } else { Box::new(head.chain(file)) };
        let gzip = is_gzip(&magic[..got]);
        let unbounded = match (gzip, meta.is_file()) {
            (true, _) => "it unpacks (gzip) to",
            (false, false) => "not a regular file (a device or a pipe), and it gives",
            (false, true) => "",
        };
        let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::MultiGzDecoder::new(raw)) } else { raw };
        let (left, capped) = if unbounded.is_empty() { (meta.len(), None) } else { (cap.unwrap_or(u64::MAX), cap.map(|_| unbounded)) };
        Ok(Pieces { path, reader, gzip, piece_bytes, left, capped })
    }

    /// Tops `piece` up to a piece's length; returns whether the input has ended.
    fn fill(&mut self, piece: &mut Vec<u8>) -> Result<bool> {
        use std::io::Read;
        let path = self.path;
        let fault = |e: std::io::Error| if self.gzip { Error::Format { path: path.into(), message: format!("gzip data is corrupt or truncated: {e}") } } else { Error::io(path, e) };
        let want = (self.piece_bytes.saturating_sub(piece.len()) as u64).min(self.left);
        let got = (&mut self.reader).take(want).read_to_end(piece).map_err(fault)? as u64;
        self.left -= got;
        if let (0, Some(what)) = (self.left, self.capped) {
            let mut probe = [0u8; 1];
            if self.reader.read(&mut probe).map_err(fault)? > 0 {
                return Err(Error::TooLarge(format!("{}: {what} more than {}, the most it may give (a quarter of the disk space free for the block cache, which takes 4 bytes a byte of text at the most); is it the input meant?", path.display(), crate::resources::human_bytes(self.left + got))));
            }
        }
        Ok(got < want || self.left == 0)
    }
}

/// Whether `head` starts a gzip stream.
fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
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
    if let Some(what) = unread_container(&piece).or(is_packed(&piece).then_some("a zip archive (or gzip within gzip)")) {
        return Err(Error::Format { path: path.into(), message: format!("this is {what}; --memory reads rating files and gzip piece by piece: unpack it first") });
    }
    let format = match options.format {
        // Whole records only, unless the input ends here: a piece's length is no sign.
        Format::Auto => detect_format(if at_end { &piece } else { &piece[..piece.len() / 12 * 12] }, path, options)?,
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
mod tests {
    use super::*;
    use crate::data::load_ratings;

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
        let files = [("a.tsv", text.into_bytes()), ("b.csv", csv.into_bytes()), ("c.bin", bytemuck::cast_slice(&records).to_vec()), ("f.records", bytemuck::cast_slice(&records).to_vec()), ("d.csv", labelled.into_bytes()), ("e.txt", events.into_bytes())];
        // Each again in gzip: unpacked as it is read, the seams falling anywhere in its stream.
        let files = files.into_iter().flat_map(|(name, bytes)| [(name.to_string(), gzip(&bytes)), (name.to_string(), bytes)].into_iter().enumerate().map(|(i, (n, b))| (if i == 0 { format!("{n}.gz") } else { n }, b)));
        for (name, bytes) in files {
            let path = dir.path().join(&name);
            std::fs::write(&path, &bytes).unwrap();
            let loaded = load_ratings(&path, LoadOptions::default()).unwrap();
            let (whole, events) = (loaded.ratings, loaded.events);
            assert_eq!(events.is_some(), name.starts_with("e.txt"), "{name}");
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

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// What has no size to bound it (gzip, a pipe) stops at the cap with an error saying so;
    /// corrupt gzip and a zip archive are named.
    #[test]
    fn unbounded_inputs_stop_at_the_cap_and_bad_archives_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..5000).map(|n| format!("{} {} 3\n", n % 97, n % 89)).collect();
        let capped = |path: &Path, cap: u64| stream_in_pieces(path, &LoadOptions { max_bytes: Some(cap), ..LoadOptions::default() }, 1000, |_| Ok(()));
        let gz = dir.path().join("r.gz");
        std::fs::write(&gz, gzip(text.as_bytes())).unwrap();
        assert_eq!(capped(&gz, text.len() as u64).unwrap().ratings, 5000);
        let e = capped(&gz, text.len() as u64 - 1).unwrap_err().to_string();
        assert!(e.contains("r.gz") && e.contains("unpacks (gzip) to more than"), "{e}");
        let mut truncated = gzip(text.as_bytes());
        truncated.truncate(truncated.len() / 2);
        std::fs::write(&gz, truncated).unwrap();
        let e = capped(&gz, 1 << 30).unwrap_err().to_string();
        assert!(e.contains("gzip data is corrupt or truncated"), "{e}");
        let zip = dir.path().join("r.zip");
        std::fs::write(&zip, b"PK\x03\x04 and the rest").unwrap();
        let e = capped(&zip, 1 << 30).unwrap_err().to_string();
        assert!(e.contains("a zip archive") && e.contains("unpack it first"), "{e}");
        assert!(!streamable(&zip, &LoadOptions::default()) && streamable(&gz, &LoadOptions::default()));
        #[cfg(unix)]
        {
            // A named pipe, as `<(command)` or /dev/stdin give: read once, up to the cap.
            let fifo = dir.path().join("pipe");
            assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
            for (cap, ok) in [(text.len() as u64, true), (text.len() as u64 / 2, false)] {
                let writer = std::thread::spawn({
                    let (fifo, text) = (fifo.clone(), text.clone());
                    // The reader may stop early: a broken pipe is its business.
                    move || drop(std::fs::write(fifo, text))
                });
                let read = capped(&fifo, cap);
                writer.join().unwrap();
                match read {
                    Ok(report) => assert!(ok && report.ratings == 5000),
                    Err(e) => assert!(!ok && e.to_string().contains("a device or a pipe), and it gives more than"), "{e}"),
                }
            }
            assert!(!streamable(&fifo, &LoadOptions::default()), "a pipe cannot be read twice");
        }
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
