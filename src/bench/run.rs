//! Timed training runs of each backend on one problem, with the figures a user compares.

use crate::cpu::CpuMode;
use crate::problem::Problem;
use crate::error::Result;
use crate::gpu::{GpuOptions, Precision};
use crate::model::Params;
use crate::objective::Metric;
use crate::solver::UploadCounts;
use crate::training::{train, Backend, EpochReport};

/// One backend's run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub backend: String,
    pub data: String,
    pub ratings: usize,
    pub users: usize,
    pub items: usize,
    pub rank: usize,
    pub epochs: usize,
    /// Host clock per epoch: from when the host could go on with the epoch to its end (the
    /// GPU's epochs overlap on the host, so no wait between them is counted twice); test
    /// scoring included on the epochs that score (`--eval-every`).
    pub seconds_per_epoch: f64,
    pub updates_per_second: f64,
    /// The device's own clock over the update kernels alone (GPU timestamp queries).
    pub kernel_seconds_per_epoch: Option<f64>,
    /// Bytes streamed to and from the device (or disk) per epoch beyond what stays resident.
    pub streamed_bytes_per_epoch: f64,
    /// Those bytes over the host seconds of the epochs.
    pub streamed_gigabytes_per_second: f64,
    /// Of the streamed windows, the share the host wrote while the device was still busy with
    /// earlier work (the upload overlapping the kernels); `None` when nothing streamed.
    pub upload_overlap: Option<f64>,
    /// Set-up before the first epoch (shuffle, upload, kernel compilation), once per run.
    pub setup_seconds: f64,
    /// Bytes one update moves at the least: the rating, both rows and biases read and written.
    pub bytes_per_update: f64,
    pub gigabytes_per_second: f64,
    /// Share of the device's memory bandwidth, when it was given.
    pub bandwidth_share: Option<f64>,
    pub test_rmse: Option<f64>,
    /// The loss's own metric (`rmse` for squared error, `log_loss` for logistic, ...).
    pub metric: Metric,
    /// That metric on the test set after the last epoch.
    pub test_metric: Option<f64>,
    /// Wall seconds from the first epoch (set-up excluded; evaluation included) until the test
    /// metric first reached the target: the training's own time, as a peer's is measured
    /// without its loading and set-up (scripts/libmf_vs_gpumf.sh differences two runs).
    pub seconds_to_target: Option<f64>,
    /// Peak resident memory of this process so far (Linux), bytes.
    pub peak_rss_bytes: Option<u64>,
    pub device_buffer_bytes: u64,
    pub history: Vec<EpochReport>,
}

/// The least traffic of one SGD update: a 12-byte rating, the user and item rows read and
/// written, two f32 biases read and written, and the two rows' f32 regularisation weights read.
pub fn bytes_per_update(rank: usize, precision: Precision) -> f64 {
    let factor = match precision {
        Precision::F32 => 4.0,
        Precision::F16 => 2.0,
    };
    12.0 + 4.0 * rank as f64 * factor + 16.0 + 8.0
}

/// Peak resident set size of this process, from /proc (Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Trains `backend` on `problem` and measures it; `target` is a test value of the loss's
/// metric (an RMSE for squared error) whose first epoch reaching it is timed. `on_epoch` hears
/// each epoch as it ends.
pub fn run(problem: &Problem, data: &str, params: &Params, backend: &Backend, target: Option<f64>, bandwidth_gbps: Option<f64>, on_epoch: impl FnMut(&EpochReport)) -> Result<BenchRow> {
    let t = train(problem, params, backend, on_epoch)?;
    let precision = match backend {
        Backend::Gpu(GpuOptions { precision, .. }) => *precision,
        Backend::Cpu(_) => Precision::F32,
    };
    let epochs = t.history.len();
    let metric = params.loss.metric();
    let updates_per_second = (problem.train_len() * epochs) as f64 / t.train_seconds;
    let bytes = bytes_per_update(params.rank, precision);
    let gbps = updates_per_second * bytes / 1e9;
    Ok(BenchRow {
        backend: t.backend,
        data: data.to_string(),
        ratings: problem.train_len(),
        users: problem.num_users(),
        items: problem.num_items(),
        rank: params.rank,
        epochs,
        seconds_per_epoch: t.train_seconds / epochs as f64,
        updates_per_second,
        kernel_seconds_per_epoch: t.kernel_seconds.map(|k| k / epochs as f64),
        streamed_bytes_per_epoch: t.history.iter().map(|r| r.streamed_bytes as f64).sum::<f64>() / epochs as f64,
        streamed_gigabytes_per_second: t.history.iter().map(|r| r.streamed_bytes as f64).sum::<f64>() / t.train_seconds / 1e9,
        upload_overlap: {
            let uploads = t.history.iter().fold(UploadCounts::default(), |a, r| a.merge(r.uploads));
            (uploads.windows > 0).then(|| uploads.while_device_busy as f64 / uploads.windows as f64)
        },
        setup_seconds: t.setup_seconds,
        bytes_per_update: bytes,
        gigabytes_per_second: gbps,
        bandwidth_share: bandwidth_gbps.map(|b| gbps / b),
        test_rmse: t.history.last().and_then(|r| r.test_rmse()),
        metric,
        test_metric: t.history.last().and_then(|r| r.test_metric()),
        seconds_to_target: target.and_then(|target| {
            let reached = |x: f64| x == target || metric.better(x, target);
            t.history.iter().find(|r| r.test_metric().is_some_and(reached)).map(|r| r.elapsed_seconds - t.setup_seconds)
        }),
        peak_rss_bytes: peak_rss_bytes(),
        device_buffer_bytes: t.device_bytes,
        history: t.history,
    })
}

/// The backends a bench compares, by name: `gpu`, `gpu-f16`, `cpu` (sequential), `cpu-threads` (parallel blocks; `hogwild` is its old name).
pub fn backend_named(name: &str, threads: usize, gpu: &GpuOptions) -> Option<Backend> {
    Some(match name {
        "gpu" => Backend::Gpu(GpuOptions { precision: Precision::F32, ..gpu.clone() }),
        "gpu-f16" => Backend::Gpu(GpuOptions { precision: Precision::F16, ..gpu.clone() }),
        "cpu" | "sequential" => Backend::Cpu(CpuMode::Sequential),
        "cpu-threads" | "hogwild" => Backend::Cpu(CpuMode::Parallel { threads: threads.max(1) }),
        _ => return None,
    })
}

/// The name [`backend_named`] knows `backend` by.
pub fn backend_name(backend: &Backend) -> &'static str {
    match backend {
        Backend::Gpu(GpuOptions { precision: Precision::F16, .. }) => "gpu-f16",
        Backend::Gpu(_) => "gpu",
        Backend::Cpu(CpuMode::Sequential) => "cpu",
        Backend::Cpu(_) => "cpu-threads",
    }
}

/// A plain-text table of rows, for people.
pub fn table(rows: &[BenchRow]) -> String {
    let w = rows.iter().map(|r| r.backend.chars().count()).max().unwrap_or(0).max(7);
    // Rows of one run share a loss; its metric heads the column.
    let metric = rows.first().map_or(Metric::Rmse, |r| r.metric).label();
    let m = metric.len().max(8);
    let mut s = format!(
        "{:<w$} {:>10} {:>5} {:>9} {:>10} {:>11} {:>10} {:>8} {:>11} {:>10} {:>8} {:>m$} {:>9} {:>9} {:>9}\n",
        "backend", "ratings", "rank", "set-up s", "host s/ep", "kernel s/ep", "updates/s", "eff GB/s", "stream MB/ep", "stream GB/s", "overlap", metric, "to target", "RSS MiB", "GPU MiB"
    );
    for r in rows {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |x| format!("{x:.p$}"));
        s.push_str(&format!(
            "{:<w$} {:>10} {:>5} {:>9.2} {:>10.4} {:>11} {:>9.1}M {:>8.1} {:>11.1} {:>10.2} {:>8} {:>m$} {:>9} {:>9} {:>9.1}\n",
            r.backend,
            r.ratings,
            r.rank,
            r.setup_seconds,
            r.seconds_per_epoch,
            opt(r.kernel_seconds_per_epoch, 4),
            r.updates_per_second / 1e6,
            r.gigabytes_per_second,
            r.streamed_bytes_per_epoch / 1e6,
            r.streamed_gigabytes_per_second,
            r.upload_overlap.map_or("-".into(), |o| format!("{:.0}%", 100.0 * o)),
            opt(r.test_metric, 4),
            opt(r.seconds_to_target, 2),
            r.peak_rss_bytes.map_or("-".into(), |b| format!("{}", b >> 20)),
            r.device_buffer_bytes as f64 / (1u64 << 20) as f64,
        ));
    }
    if !rows.is_empty() {
        s.push_str("eff GB/s: effective bytes, updates/s x (12 + 4 x rank x bytes per factor + 24), the least an update moves if no row stays in cache");
        if rows.iter().any(|r| r.backend.starts_with("cpu")) {
            s.push_str(";\n  on the CPU rows stay in its caches, so the figure can exceed what the memory delivers");
        }
        if rows.iter().any(|r| r.upload_overlap.is_some()) {
            s.push_str(";\noverlap: streamed windows the host wrote while the device was still busy with earlier ones");
        }
        s.push('\n');
    }
    s
}

/// Rows as CSV (no history), for tools.
pub fn csv(rows: &[BenchRow]) -> String {
    let mut s = String::from("backend,data,ratings,users,items,rank,epochs,setup_seconds,seconds_per_epoch,kernel_seconds_per_epoch,streamed_bytes_per_epoch,streamed_gigabytes_per_second,upload_overlap,updates_per_second,bytes_per_update,gigabytes_per_second,bandwidth_share,test_rmse,metric,test_metric,seconds_to_target,peak_rss_bytes,device_buffer_bytes\n");
    let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    for r in rows {
        s.push_str(&format!(
            "\"{}\",\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.backend.replace('"', "'"),
            r.data.replace('"', "'"),
            r.ratings,
            r.users,
            r.items,
            r.rank,
            r.epochs,
            r.setup_seconds,
            r.seconds_per_epoch,
            opt(r.kernel_seconds_per_epoch),
            r.streamed_bytes_per_epoch,
            r.streamed_gigabytes_per_second,
            opt(r.upload_overlap),
            r.updates_per_second,
            r.bytes_per_update,
            r.gigabytes_per_second,
            opt(r.bandwidth_share),
            opt(r.test_rmse),
            r.metric.name(),
            opt(r.test_metric),
            opt(r.seconds_to_target),
            r.peak_rss_bytes.map_or(String::new(), |b| b.to_string()),
            r.device_buffer_bytes
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_is_named_as_it_was_asked_for() {
        for name in ["gpu", "gpu-f16", "cpu", "cpu-threads"] {
            let backend = backend_named(name, 2, &GpuOptions::default()).unwrap();
            assert_eq!(backend_name(&backend), name);
        }
        assert_eq!(backend_name(&backend_named("hogwild", 2, &GpuOptions::default()).unwrap()), "cpu-threads", "the old name");
    }
}
