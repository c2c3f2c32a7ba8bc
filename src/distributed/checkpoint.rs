//! Checkpoints of a DSGD run: each worker writes the rows it holds at an epoch's end (its
//! stripes and the halves its stripes train first next), atomically, to
//! `worker-W-of-N.epoch-E.ckpt`. Where each half lies then follows from the seed, so a run
//! resumed from them reaches the same bits as one never stopped.

use super::{Rows, Shared, WorkerStart};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"gpumfCKP";

/// Settings a resumed run may change: how long it runs and how often it checkpoints.
const MAY_CHANGE: [&str; 3] = ["resume epoch", "--epochs", "--checkpoint-every"];

/// The checkpoint a run resumes from.
pub(crate) struct Found {
    pub dir: PathBuf,
    pub epoch: usize,
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

/// The latest epoch for which every worker of this process has a checkpoint in `dir`.
pub(crate) fn latest(dir: &Path, cluster: &super::Cluster) -> Result<Found> {
    if !dir.is_dir() {
        return Err(Error::InvalidParameter(format!("--resume {}: not a directory", dir.display())));
    }
    let workers = cluster.total_workers();
    let mut common: Option<Vec<usize>> = None;
    for w in cluster.workers * cluster.process..cluster.workers * (cluster.process + 1) {
        let epochs = epochs_of(dir, w, workers)?;
        common = Some(match common {
            None => epochs,
            Some(c) => c.into_iter().filter(|e| epochs.contains(e)).collect(),
        });
    }
    // The latest whose files are whole: a run killed while writing one leaves the one before.
    let local = cluster.workers * cluster.process..cluster.workers * (cluster.process + 1);
    let whole = |epoch: usize| local.clone().all(|w| intact(&dir.join(file_name(w, workers, epoch))));
    let candidates = common.unwrap_or_default();
    if let (Some(&latest), None) = (candidates.last(), candidates.iter().rev().find(|&&e| whole(e))) {
        return Err(Error::Format { path: dir.join(file_name(cluster.workers * cluster.process, workers, latest)), message: "damaged (its checksum does not match), and no older checkpoint is whole".into() });
    }
    match candidates.into_iter().rev().find(|&e| whole(e)) {
        Some(epoch) => Ok(Found { dir: dir.to_path_buf(), epoch }),
        None => Err(Error::Format {
            path: dir.into(),
            message: format!(
                "no checkpoint of every worker of process {} for {workers} workers (files worker-W-of-{workers}.epoch-E.ckpt); was it written with another --workers or host file?",
                cluster.process
            ),
        }),
    }
}

/// Whether the file at `path` is a checkpoint whose checksum matches.
fn intact(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| checked_body(&bytes).is_ok())
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
pub(crate) fn write(dir: &Path, epoch: usize, worker: usize, shared: &Shared, stripes: &BTreeMap<usize, Rows>, halves: &HashMap<usize, (u64, Rows)>) -> Result<()> {
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
            for values in [&rows.factors, &rows.bias] {
                put(&(values.len() as u64).to_le_bytes()).map_err(fail)?;
                put(bytemuck::cast_slice(values)).map_err(fail)?;
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
    let mut at = 8;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = body.get(at..at + n).ok_or_else(|| bad("cut short".into()))?;
        at += n;
        Ok(s)
    };
    let u64_ = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let header_len = u64_(take(8)?) as usize;
    let header: serde_json::Value = serde_json::from_slice(take(header_len)?).map_err(|e| bad(format!("unreadable header: {e}")))?;
    let theirs: Vec<(String, String)> = serde_json::from_value(header["settings"].clone()).map_err(|e| bad(format!("unreadable settings: {e}")))?;
    let differences = super::differences(&shared.settings, &theirs, &MAY_CHANGE, "now");
    if !differences.is_empty() {
        return Err(bad(format!("written by a run with other settings or data: {}", differences.join("; "))));
    }
    let mut start = WorkerStart { stripes: BTreeMap::new(), halves: HashMap::new(), device: None };
    loop {
        let kind = take(1)?[0];
        if kind == 2 {
            break;
        }
        let id = u64_(take(8)?) as usize;
        let tag = u64_(take(8)?);
        let mut rows = Rows::default();
        for values in [&mut rows.factors, &mut rows.bias] {
            let n = u64_(take(8)?) as usize;
            *values = take(4 * n)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        }
        if kind == 0 {
            start.stripes.insert(id, rows);
        } else {
            start.halves.insert(id, (tag, rows));
        }
    }
    Ok(start)
}
