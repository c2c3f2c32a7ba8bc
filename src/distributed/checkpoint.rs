//! Checkpoints of a DSGD run: each worker writes the rows it holds at an epoch's end (its
//! stripes and the halves its stripes train first next), atomically, to
//! `worker-W-of-N.epoch-E.ckpt`. Where each half lies then follows from the seed, so a run
//! resumed from them reaches the same bits as one never stopped.

use super::exchange::Reader;
use super::{Rows, Shared, WorkerStart};
use crate::vector::CacheLines;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"gpumfCKP";

/// Settings a resumed run may change: how long it runs and how often it checkpoints.
const MAY_CHANGE: [&str; 3] = ["resume epoch", "--epochs", "--checkpoint-every"];

/// The checkpoint a run resumes from, and the newer ones passed over, each with why.
pub(crate) struct Found {
    pub dir: PathBuf,
    pub epoch: usize,
    pub passed_over: Vec<String>,
}

fn file_name(worker: usize, workers: usize, epoch: usize) -> String {
    format!("worker-{worker}-of-{workers}.epoch-{epoch}.ckpt")
}

/// Epochs with a checkpoint of `worker` in `dir`.
fn epochs_of(dir: &Path, worker: usize, workers: usize) -> Result<Vec<usize>> {
    let prefix = format!("worker-{worker}-of-{workers}.epoch-");
    let mut epochs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(epoch) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".ckpt")).and_then(|e| e.parse().ok()) {
            epochs.push(epoch);
        }
    }
    epochs.sort_unstable();
    Ok(epochs)
}

/// The latest epoch for which every worker of this process has a whole checkpoint in `dir`,
/// with a line for each newer one passed over (which file, and why).
pub(crate) fn latest(dir: &Path, cluster: &super::Cluster) -> Result<Found> {
    if !dir.is_dir() {
        return Err(Error::InvalidParameter(format!("--resume {}: not a directory", dir.display())));
    }
    let workers = cluster.total_workers();
    let local = cluster.workers * cluster.process..cluster.workers * (cluster.process + 1);
    let mut epochs: Vec<usize> = Vec::new();
    for w in local.clone() {
        epochs.extend(epochs_of(dir, w, workers)?);
    }
    epochs.sort_unstable();
    epochs.dedup();
    let mut passed_over = Vec::new();
    for &epoch in epochs.iter().rev() {
        let faults: Vec<String> = local.clone().filter_map(|w| check_file(&dir.join(file_name(w, workers, epoch)), w, workers, epoch).err()).collect();
        if faults.is_empty() {
            return Ok(Found { dir: dir.to_path_buf(), epoch, passed_over });
        }
        passed_over.push(format!("the checkpoint after epoch {epoch} is passed over: {}", faults.join("; ")));
    }
    let why = if passed_over.is_empty() { String::new() } else { format!(" ({})", passed_over.join("; ")) };
    Err(Error::Format {
        path: dir.into(),
        message: format!(
            "no whole checkpoint of every worker of process {} for {workers} workers (files worker-W-of-{workers}.epoch-E.ckpt){why}; was it written with another --workers or host file?",
            cluster.process
        ),
    })
}

/// Whether the file at `path` is worker `worker`'s whole checkpoint after `epoch`; else what
/// is wrong with it, naming it.
fn check_file(path: &Path, worker: usize, workers: usize, epoch: usize) -> std::result::Result<(), String> {
    let name = path.display();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("{name} is missing")),
        Err(e) => return Err(format!("{name}: {e}")),
    };
    if bytes.is_empty() {
        return Err(format!("{name} is empty"));
    }
    let body = checked_body(&bytes).map_err(|why| format!("{name}: {why}"))?;
    let header = header_of(body).map_err(|why| format!("{name}: {why}"))?;
    let said = (header["worker"].as_u64(), header["workers"].as_u64(), header["epoch"].as_u64());
    if said != (Some(worker as u64), Some(workers as u64), Some(epoch as u64)) {
        return Err(format!(
            "{name} holds the rows of worker {} of {} after epoch {} (moved or copied from another name)",
            said.0.map_or("?".into(), |w| w.to_string()),
            said.1.map_or("?".into(), |w| w.to_string()),
            said.2.map_or("?".into(), |e| e.to_string())
        ));
    }
    Ok(())
}

/// A checkpoint body's JSON header.
fn header_of(body: &[u8]) -> std::result::Result<serde_json::Value, String> {
    let len = body.get(8..16).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize).ok_or("cut short")?;
    let json = body.get(16..16usize.saturating_add(len)).ok_or("cut short")?;
    serde_json::from_slice(json).map_err(|e| format!("unreadable header: {e}"))
}

/// Refuses to write checkpoints into `dir` when it holds another run's: files of another worker
/// count, or written with other settings or data. (Resuming into the same directory is the
/// same run.)
pub(crate) fn refuse_others(dir: &Path, cluster: &super::Cluster, settings: &[(String, String)]) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("worker-") && name.ends_with(".ckpt")) {
            continue;
        }
        let path = entry.path();
        let other = |why: String| Error::InvalidParameter(format!("--checkpoint-dir {}: {} is another run's checkpoint ({why}); give another directory, or remove it", dir.display(), path.display()));
        let workers = cluster.total_workers();
        if !name.contains(&format!("-of-{workers}.epoch-")) {
            return Err(other(format!("written for another worker count, not {workers}")));
        }
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Ok(header) = checked_body(&bytes).map_err(String::from).and_then(header_of) else { continue };
        let theirs: Vec<(String, String)> = serde_json::from_value(header["settings"].clone()).unwrap_or_default();
        let differences = super::differences(settings, &theirs, &MAY_CHANGE, "now");
        if !differences.is_empty() {
            return Err(other(differences.join("; ")));
        }
    }
    Ok(())
}

/// A checkpoint's bytes less the checksum that ends them, once the magic and the checksum are
/// found right; else why not.
fn checked_body(bytes: &[u8]) -> std::result::Result<&[u8], &'static str> {
    if bytes.len() < 8 + 8 + 4 || &bytes[..8] != MAGIC {
        return Err("not a gpumf checkpoint");
    }
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(sum.try_into().expect("4 bytes")) {
        return Err("the checksum does not match: the file is damaged");
    }
    Ok(body)
}

/// Writes `worker`'s rows after `epoch` epochs, then removes its checkpoints older than the
/// one before (a crash while writing leaves the previous one whole).
/// What a checkpoint keeps of the SVD++ term: y, and each stripe's shares summed since the last
/// passes (they run every few epochs, so a checkpoint between them must carry the shares for
/// the resumed run to reach the same bits).
pub(crate) struct Terms<'a> {
    pub item_vectors: &'a [f32],
    pub shares: &'a BTreeMap<usize, CacheLines>,
}

pub(crate) fn write(dir: &Path, epoch: usize, worker: usize, shared: &Shared, stripes: &BTreeMap<usize, Rows>, halves: &HashMap<usize, (u64, Rows)>, terms: Option<Terms>) -> Result<()> {
    let workers = shared.cluster.total_workers();
    let path = dir.join(file_name(worker, workers, epoch));
    let fail = |e: std::io::Error| Error::Output { path: path.clone(), message: format!("writing the checkpoint: {e}") };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    {
        let mut w = std::io::BufWriter::new(file.as_file_mut());
        let mut crc = crc32fast::Hasher::new();
        let mut put = |b: &[u8]| -> std::io::Result<()> {
            crc.update(b);
            w.write_all(b)
        };
        let header = serde_json::to_vec(&serde_json::json!({ "epoch": epoch, "worker": worker, "workers": workers, "settings": shared.settings })).expect("json");
        put(MAGIC).map_err(fail)?;
        put(&(header.len() as u64).to_le_bytes()).map_err(fail)?;
        put(&header).map_err(fail)?;
        let mut halves: Vec<_> = halves.iter().collect();
        halves.sort_by_key(|(h, _)| **h);
        let records = stripes.iter().map(|(p, r)| (0u8, *p, 0u64, r)).chain(halves.into_iter().map(|(h, (tag, r))| (1u8, *h, *tag, r)));
        for (kind, id, tag, rows) in records {
            put(&[kind]).map_err(fail)?;
            put(&(id as u64).to_le_bytes()).map_err(fail)?;
            put(&tag.to_le_bytes()).map_err(fail)?;
            for values in [&rows.factors[..], &rows.bias[..]] {
                put(&(values.len() as u64).to_le_bytes()).map_err(fail)?;
                put(bytemuck::cast_slice(values)).map_err(fail)?;
            }
        }
        // The SVD++ term's item vectors y (the priors follow from them), then the stripes'
        // shares where the updates since the last passes left any.
        if let Some(Terms { item_vectors: y, shares }) = terms {
            put(&[3]).map_err(fail)?;
            put(&(y.len() as u64).to_le_bytes()).map_err(fail)?;
            put(bytemuck::cast_slice(y)).map_err(fail)?;
            for (p, share) in shares.iter().filter(|(_, share)| share.iter().any(|&x| x != 0.0)) {
                put(&[4]).map_err(fail)?;
                put(&(*p as u64).to_le_bytes()).map_err(fail)?;
                put(&(share.len() as u64).to_le_bytes()).map_err(fail)?;
                put(bytemuck::cast_slice(share)).map_err(fail)?;
            }
        }
        put(&[2]).map_err(fail)?;
        let sum = crc.finalize();
        w.write_all(&sum.to_le_bytes()).map_err(fail)?;
        w.flush().map_err(fail)?;
    }
    file.as_file().sync_all().map_err(fail)?;
    file.persist(&path).map_err(|e| fail(e.error))?;
    if let Some(every) = shared.cluster.checkpoint.as_ref().map(|c| c.1) {
        for old in epochs_of(dir, worker, workers)?.into_iter().filter(|&e| e + every < epoch) {
            let _ = std::fs::remove_file(dir.join(file_name(worker, workers, old)));
        }
    }
    Ok(())
}

/// `worker`'s rows after `epoch` epochs, checked against this run's settings.
pub(crate) fn read(dir: &Path, epoch: usize, worker: usize, shared: &Shared) -> Result<WorkerStart> {
    let workers = shared.cluster.total_workers();
    let path = dir.join(file_name(worker, workers, epoch));
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let bad = |message: String| Error::Format { path: path.clone(), message };
    let body = checked_body(&bytes).map_err(|why| bad(why.into()))?;
    let mut reader = Reader { bytes: body, at: 8 };
    let cut_short = || bad("cut short".into());
    let header_len = reader.u64().ok_or_else(cut_short)? as usize;
    let header: serde_json::Value = serde_json::from_slice(reader.take(header_len).ok_or_else(cut_short)?).map_err(|e| bad(format!("unreadable header: {e}")))?;
    let theirs: Vec<(String, String)> = serde_json::from_value(header["settings"].clone()).map_err(|e| bad(format!("unreadable settings: {e}")))?;
    let differences = super::differences(&shared.settings, &theirs, &MAY_CHANGE, "now");
    if !differences.is_empty() {
        return Err(bad(format!("written by a run with other settings or data: {}", differences.join("; "))));
    }
    check_file(&path, worker, workers, epoch).map_err(&bad)?;
    let start = records(&mut reader).ok_or_else(cut_short)?;
    if shared.svdpp.is_some() != start.item_vectors.is_some() {
        return Err(bad("written with the SVD++ term set otherwise (--no-svdpp)".into()));
    }
    for (p, share) in &start.shares {
        if start.stripes.get(p).is_none_or(|rows| rows.factors.len() != share.len()) {
            return Err(bad(format!("the SVD++ term's shares of stripe {p} do not match its rows")));
        }
    }
    Ok(start)
}

/// The records after a checkpoint's header, up to the end marker (kind 2): stripes (0) and
/// halves (1) of rows, y (3) and stripes' shares (4); `None` where the body is cut short.
fn records(r: &mut Reader) -> Option<WorkerStart> {
    let mut start = WorkerStart { stripes: BTreeMap::new(), halves: HashMap::new(), item_vectors: None, shares: BTreeMap::new(), device: None, terms: None };
    loop {
        match r.u8()? {
            2 => return Some(start),
            3 => start.item_vectors = Some(r.floats()?),
            4 => {
                let id = r.u64()? as usize;
                start.shares.insert(id, r.floats()?);
            }
            kind => {
                let (id, tag) = (r.u64()? as usize, r.u64()?);
                let rows = Rows { factors: r.floats()?.into(), bias: r.floats()? };
                if kind == 0 {
                    start.stripes.insert(id, rows);
                } else {
                    start.halves.insert(id, (tag, rows));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats_record(count: u64, floats: &[f32]) -> Vec<u8> {
        let mut body = count.to_le_bytes().to_vec();
        body.extend(floats.iter().flat_map(|f| f.to_le_bytes()));
        body
    }

    #[test]
    fn a_count_of_floats_past_the_body_reads_none() {
        let body = floats_record(2, &[1.5, -2.0]);
        assert_eq!(Reader { bytes: &body, at: 0 }.floats(), Some(vec![1.5, -2.0]));
        // A count the body cannot hold, up to one whose bytes overflow: cut short, no panic.
        for count in [3, u64::MAX / 4 + 1, u64::MAX] {
            let body = floats_record(count, &[1.5, -2.0]);
            assert_eq!(Reader { bytes: &body, at: 0 }.floats(), None, "count {count}");
        }
    }

    #[test]
    fn records_end_at_the_end_marker_and_a_body_without_one_is_cut_short() {
        let mut body = vec![0u8];
        body.extend(7u64.to_le_bytes());
        body.extend(9u64.to_le_bytes());
        body.extend(floats_record(1, &[0.5]));
        body.extend(floats_record(1, &[0.25]));
        let whole = [&body[..], &[2]].concat();
        let start = records(&mut Reader { bytes: &whole, at: 0 }).expect("whole");
        assert_eq!(start.stripes[&7].bias, vec![0.25]);
        assert_eq!(records(&mut Reader { bytes: &body, at: 0 }).map(|_| ()), None);
    }
}
