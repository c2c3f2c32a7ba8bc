//! Output files: checked before the work that fills them (so a long run never ends in a
//! failed save), and written whole or not at all.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

fn fail(path: &Path, message: String) -> Error {
    Error::Output { path: path.into(), message }
}

/// An I/O error without the probe's temporary path that tempfile adds to it.
fn plain(e: &std::io::Error) -> String {
    e.get_ref().and_then(|inner| inner.source()).map_or_else(|| e.to_string(), |source| source.to_string())
}

/// A temporary file in `dir` with the permissions a plain create would give (tempfile's own
/// are owner-only).
fn temporary(dir: &Path, prefix: &str, suffix: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// The directory a file will be created in ("." for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fails unless `path` can be written: not a directory, not an existing file (unless
/// `overwrite`), in a directory that exists and takes a new file. Creates and removes a
/// probe file there, since permissions alone do not tell (read-only mounts, ACLs, root).
pub fn check_output(path: &Path, overwrite: bool) -> Result<()> {
    if path.is_dir() {
        return Err(fail(path, "cannot write: it is a directory; give a file name inside it".into()));
    }
    // A symbolic link counts as there, even when what it names is not (a dangling link, a loop):
    // the file is renamed into its place, which would replace the link.
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if link && !overwrite {
        let to = std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string());
        let why = match std::fs::metadata(path) {
            Ok(_) => String::new(),
            Err(e) if e.raw_os_error() == Some(40) => " (a loop of links)".into(),
            Err(_) => format!(" ({to} does not exist)"),
        };
        return Err(fail(path, format!("is a symbolic link to {to}{why}; not replacing it (pass --force to replace the link with the file)")));
    }
    if path.exists() && !overwrite {
        return Err(fail(path, "already exists; not overwriting it (pass --force to replace it)".into()));
    }
    let dir = parent_dir(path);
    match std::fs::metadata(dir) {
        Err(_) => return Err(fail(path, format!("cannot write: the directory {} does not exist", dir.display()))),
        Ok(m) if !m.is_dir() => return Err(fail(path, format!("cannot write: {} is not a directory", dir.display()))),
        Ok(_) => {}
    }
    temporary(dir, ".gpumf-probe.", "").map_err(|e| fail(path, format!("cannot write in {}: {}", dir.display(), plain(&e))))?;
    Ok(())
}

/// Fails unless `dir` is a directory, or is none yet in a directory (so it can be made);
/// `flag` names it in the error. Whether it is there already.
pub fn check_dir(dir: &Path, flag: &str) -> Result<bool> {
    if dir.is_dir() {
        return Ok(true);
    }
    let bad = |why: String| Err(Error::InvalidParameter(format!("{flag} {}: {why}", dir.display())));
    if dir.exists() {
        return bad("exists and is not a directory".into());
    }
    let parent = parent_dir(dir);
    if !parent.is_dir() {
        return bad(format!("{} is not a directory", parent.display()));
    }
    Ok(false)
}

/// Whether two output paths name one place, whether or not a file is there yet (`a.bin` and
/// `./a.bin`, or `d/../a.bin`): the second write would replace the first. (A link is a place
/// of its own: writing replaces the link, not what it names.)
pub fn same_file(a: &Path, b: &Path) -> bool {
    let place = |p: &Path| Some(parent_dir(p).canonicalize().ok()?.join(p.file_name()?));
    a == b || place(a).is_some_and(|x| Some(x) == place(b))
}

/// Refuses an output (`flag` `path`) that is one of the run's inputs (each a flag and the file
/// it names, if given): even with --force, replacing what the run reads loses the user's data.
pub fn check_not_an_input(path: &Path, flag: &str, inputs: &[(&str, Option<&Path>)]) -> Result<()> {
    match inputs.iter().find_map(|&(input, file)| file.filter(|f| same_file(path, f)).map(|_| input)) {
        Some(input) => Err(Error::InvalidParameter(format!("{flag} {}: the file {input} reads; writing it would replace that input", path.display()))),
        None => Ok(()),
    }
}

/// Writes `path` through a temporary file beside it, renamed into place once complete.
/// The temporary name (`.NAME.XXXXXX.partial`, created exclusively) cannot be a file of the
/// user's, and it is removed on every failure, the final rename included.
pub fn write_atomically(path: &Path, overwrite: bool, fill: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>) -> Result<()> {
    check_output(path, overwrite)?;
    let name = path.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    let tmp = temporary(parent_dir(path), &format!(".{name}."), ".partial").map_err(|e| fail(path, format!("cannot write: {}", plain(&e))))?;
    let written = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()
    })();
    written.map_err(|e| fail(path, format!("cannot write: {e}")))?;
    let placed = if overwrite { tmp.persist(path) } else { tmp.persist_noclobber(path) };
    placed.map(drop).map_err(|e| fail(path, format!("cannot move the finished file into place: {}", e.error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_checked_and_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gpumf");
        assert!(check_output(&target, false).is_ok());
        assert!(check_output(&dir.path().join("no/such/dir/m"), false).unwrap_err().to_string().contains("does not exist"));
        assert!(check_output(dir.path(), true).unwrap_err().to_string().contains("is a directory"));

        // A user's file that today's scheme would have used as its temporary is untouched.
        let bystander = dir.path().join("m.tmp-gpumf");
        std::fs::write(&bystander, b"mine").unwrap();
        write_atomically(&target, false, |w| w.write_all(b"model")).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"model");
        assert_eq!(std::fs::read(&bystander).unwrap(), b"mine");
        assert!(write_atomically(&target, false, |w| w.write_all(b"x")).unwrap_err().to_string().contains("--force"));

        // A failure while writing leaves neither a partial file nor a changed target.
        let e = write_atomically(&target, true, |_| Err(std::io::Error::other("disk full"))).unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"model");
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn two_spellings_of_one_output_are_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        assert!(same_file(&a, &dir.path().join(".").join("a.bin")), "before it exists");
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(same_file(&a, &dir.path().join("d/../a.bin")));
        assert!(!same_file(&a, &b));
        std::fs::write(&a, b"x").unwrap();
        assert!(same_file(&dir.path().join("d/../a.bin"), &a), "once it exists");
        let e = check_not_an_input(&a, "--save", &[("--test", None), ("--train", Some(&dir.path().join("d/../a.bin")))]).unwrap_err().to_string();
        assert!(e.ends_with("a.bin: the file --train reads; writing it would replace that input"), "{e}");
        check_not_an_input(&b, "--save", &[("--train", Some(&a))]).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_or_a_loop_is_refused_before_the_work() {
        let dir = tempfile::tempdir().unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let e = check_output(&dangling, false).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("does not exist"), "{e}");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let e = check_output(&a, false).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // With --force the link is replaced by the file, the file it named untouched.
        write_atomically(&dangling, true, |w| w.write_all(b"model")).unwrap();
        assert!(!std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
        assert!(!dir.path().join("nowhere").exists());
    }
}
