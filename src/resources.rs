//! What this machine can hold, checked before a size the user gave is allocated: an
//! allocation that fails aborts the process, where a check can say what fits.

use crate::error::{Error, Result};
use std::path::Path;

/// Memory the kernel says can be allocated without swapping (Linux: MemAvailable), bytes.
/// `None` where the platform does not say; then nothing is refused.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free space for an unprivileged user on the file system holding `dir`, bytes.
#[cfg(unix)]
pub fn available_disk(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(not(unix))]
pub fn available_disk(_dir: &Path) -> Option<u64> {
    None
}

/// Bytes for people: "11.2 TiB".
pub fn human_bytes(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", units[unit]) }
}

/// `bytes` as [`human_bytes`] writes it, but rounded up, not to nearest: a least amount to
/// ask for that is enough as written.
pub fn human_bytes_up(bytes: u64) -> String {
    let shown = human_bytes(bytes);
    let Some((_, unit)) = shown.split_once(' ').filter(|(_, unit)| *unit != "bytes") else { return shown };
    let scale = 1u128 << (10 * ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"].iter().position(|u| *u == unit).map_or(0, |p| p + 1));
    let tenths = (bytes as u128 * 10).div_ceil(scale);
    format!("{}.{} {unit}", tenths / 10, tenths % 10)
}

/// A count of things for people: "1 thread", "2 threads".
pub fn counted(n: usize, thing: &str) -> String {
    if n == 1 { format!("1 {thing}") } else { format!("{n} {thing}s") }
}

/// Fails when `needed` bytes of memory are more than this machine has available.
/// `what` says what needs them ("generating 10^12 ratings"); `fits` says what would fit in
/// the bytes available, in the user's terms ("at most about 1.6 billion ratings").
pub fn ensure_memory(needed: u64, what: &str, fits: impl FnOnce(u64) -> String) -> Result<()> {
    match available_memory() {
        Some(available) if needed > available => Err(Error::TooLarge(format!(
            "{what} needs about {} of memory, but {} is available; {}",
            human_bytes(needed),
            human_bytes(available),
            fits(available)
        ))),
        _ => Ok(()),
    }
}

/// Fails when writing `needed` bytes to `path` would not fit the free space of its disk;
/// `fits` says what would, in the user's terms.
pub fn ensure_disk(path: &Path, needed: u64, what: &str, fits: impl FnOnce(u64) -> String) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match available_disk(dir) {
        Some(free) if needed > free => Err(Error::TooLarge(format!(
            "{}: {what} takes about {}, but its disk has {} free; {}",
            path.display(),
            human_bytes(needed),
            human_bytes(free),
            fits(free)
        ))),
        _ => Ok(()),
    }
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most threads a trainer accepts: a few per core (more only queue for the cores and
/// cost their start-up), and never fewer than 64.
pub fn max_threads() -> usize {
    (4 * cores()).max(64)
}

/// Checks a requested thread count (`None`: one per core), naming `flag` (and Python's
/// `argument`) in the error.
pub fn threads(requested: Option<usize>, flag: &'static str, argument: &'static str) -> Result<usize> {
    match requested {
        None => Ok(cores()),
        Some(0) => Err(Error::setting(flag, argument, 0, "must be at least 1")),
        Some(t) if t > max_threads() => Err(Error::setting(
            flag,
            argument,
            t,
            format!("{t} is far more than the {} cores here; at most {} are accepted (the default is one per core)", cores(), max_threads()),
        )),
        Some(t) => Ok(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_machine_are_refused_with_what_fits() {
        if available_memory().is_some() {
            let e = ensure_memory(u64::MAX / 2, "a test", |a| format!("{a} bytes fit")).unwrap_err().to_string();
            assert!(e.contains("EiB") && e.contains("bytes fit"), "{e}");
            assert!(ensure_memory(1 << 20, "a test", |_| String::new()).is_ok());
        }
        if available_disk(Path::new(".")).is_some() {
            let e = ensure_disk(Path::new("out.bin"), u64::MAX / 2, "the file", |_| String::new()).unwrap_err().to_string();
            assert!(e.contains("free"), "{e}");
        }
        assert_eq!(human_bytes(1536), "1.5 KiB");
        // Up: never less than the bytes, as parsed back.
        for bytes in [1, 1023, 1536, 1537, 146_534, (22 << 20) + 350_000, (3 << 40) + 7] {
            let up = human_bytes_up(bytes);
            assert!(parse_size(&up.replace(" bytes", "").replace(' ', "")).unwrap() >= bytes, "{bytes}: {up}");
        }
        assert_eq!((human_bytes(1537), human_bytes_up(1537)), ("1.5 KiB".into(), "1.6 KiB".into()));
        assert!(threads(Some(10_000), "--threads", "threads").unwrap_err().to_string().contains("cores"));
        assert_eq!(threads(Some(2), "--threads", "threads").unwrap(), 2);
        assert!(threads(Some(0), "--threads", "threads").is_err());
    }
}

/// A size as people write it: `512MiB`, `8GiB`, `1.5GB`, `4096` (bytes), `64k`. Binary (KiB,
/// MiB, GiB, TiB, and K, M, G, T alone) and decimal (KB, MB, GB, TB) units, any case.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a size (write e.g. 512MiB or 8GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use KiB, MiB, GiB, TiB or KB, MB, GB, TB)")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is not a usable size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units_and_bad_ones_say_why() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_size("3 furlongs").unwrap_err().contains("unknown unit"));
        assert!(parse_size("0").is_err());
    }
}
