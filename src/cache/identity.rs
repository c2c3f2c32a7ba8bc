//! What identifies a block cache's input, so that a cache is never trained on in place of
//! another file's: its size and modification time (which a copy, an archive or `touch` can
//! give any file), checksums of pieces sampled through its content, and where the OS has them
//! its device, inode and change time, which `touch` cannot reset.

use crate::error::{Error, Result};
use std::path::Path;

/// Pieces of the input sampled for its fingerprint, and their bytes.
const SAMPLES: u64 = 64;
const SAMPLE_BYTES: u64 = 4096;

/// An input file's identity.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct Identity {
    bytes: u64,
    modified_ns: u128,
    /// CRC-32 of [`SAMPLES`] pieces spread evenly through the file (the whole of a small one).
    sampled_crc: u32,
    /// Unix: the device and inode it lives at, and when its inode last changed.
    device: Option<u64>,
    inode: Option<u64>,
    changed_ns: Option<i128>,
}

impl Identity {
    /// The identity of the file at `path` as it is now.
    pub fn of(path: &Path) -> Result<Identity> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let modified_ns = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        let (device, inode, changed_ns) = os_identity(&meta);
        Ok(Identity { bytes: meta.len(), modified_ns, sampled_crc: sampled_crc(path, meta.len())?, device, inode, changed_ns })
    }

    /// The identity of a pipe or device, which gives its bytes only once: what the OS says of
    /// it, no sample of its content. Its cache is temporary, never reused.
    pub fn of_stream(path: &Path) -> Result<Identity> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let (device, inode, changed_ns) = os_identity(&meta);
        Ok(Identity { bytes: 0, modified_ns: 0, sampled_crc: 0, device, inode, changed_ns })
    }

    /// What differs between the input as a cache recorded it (`self`) and as it is (`now`),
    /// for people; `None` when nothing does.
    pub fn changes(&self, now: &Identity) -> Option<String> {
        let mut what = Vec::new();
        if self.bytes != now.bytes {
            what.push(format!("its size ({} bytes then, {} now)", self.bytes, now.bytes));
        }
        if self.sampled_crc != now.sampled_crc {
            what.push("its content".to_string());
        }
        if self.modified_ns != now.modified_ns {
            what.push("its modification time".to_string());
        }
        if (self.device, self.inode) != (now.device, now.inode) {
            what.push("the file itself (another inode: another file of the same name, or a copy)".to_string());
        } else if self.changed_ns != now.changed_ns {
            what.push("its inode's change time (rewritten, or its times reset)".to_string());
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

/// CRC-32 of [`SAMPLES`] pieces of [`SAMPLE_BYTES`] spread evenly through `bytes` bytes of the
/// file at `path`, the first and last pieces included.
fn sampled_crc(path: &Path, bytes: u64) -> Result<u32> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut crc = crc32fast::Hasher::new();
    let mut piece = vec![0u8; SAMPLE_BYTES as usize];
    let span = bytes.saturating_sub(SAMPLE_BYTES);
    for s in 0..SAMPLES {
        let at = if SAMPLES > 1 { span * s / (SAMPLES - 1) } else { 0 };
        file.seek(SeekFrom::Start(at)).map_err(|e| Error::io(path, e))?;
        let want = SAMPLE_BYTES.min(bytes - at.min(bytes)) as usize;
        file.read_exact(&mut piece[..want]).map_err(|e| Error::io(path, e))?;
        crc.update(&piece[..want]);
    }
    Ok(crc.finalize())
}

#[cfg(unix)]
fn os_identity(meta: &std::fs::Metadata) -> (Option<u64>, Option<u64>, Option<i128>) {
    use std::os::unix::fs::MetadataExt;
    (Some(meta.dev()), Some(meta.ino()), Some(meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128))
}

#[cfg(not(unix))]
fn os_identity(_meta: &std::fs::Metadata) -> (Option<u64>, Option<u64>, Option<i128>) {
    (None, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_the_same_name_size_and_time_is_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, vec![1u8; 100_000]).unwrap();
        let mut other = vec![1u8; 100_000];
        other[50_000..50_010].copy_from_slice(&[9; 10]);
        std::fs::write(&b, &other).unwrap();
        let time = std::fs::File::open(&a).unwrap().metadata().unwrap().modified().unwrap();
        std::fs::File::options().write(true).open(&b).unwrap().set_modified(time).unwrap();
        let (ia, ib) = (Identity::of(&a).unwrap(), Identity::of(&b).unwrap());
        assert!(ia.changes(&ib).is_some_and(|c| c.contains("another inode")), "{:?}", ia.changes(&ib));
        assert_eq!(ia.changes(&Identity::of(&a).unwrap()), None, "a file is itself");
        // Rewritten in place with its modification time restored: the change time says so.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&a, &other).unwrap();
        std::fs::File::options().write(true).open(&a).unwrap().set_modified(time).unwrap();
        let changed = ia.changes(&Identity::of(&a).unwrap()).unwrap();
        assert!(changed.contains("content") || changed.contains("change time"), "{changed}");
    }
}
