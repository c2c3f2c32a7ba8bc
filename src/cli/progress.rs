//! The per-run progress bar: epoch, loss and the loss's own metric, only on a terminal.

use gpumf::training::EpochReport;
use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    /// What the held-out RMSE is called: "test", or "validation" when training stops early.
    held_out: &'static str,
}

impl Progress {
    pub fn new(epochs: usize, quiet: bool) -> Progress {
        let visible = !quiet && console::Term::stderr().is_term();
        let bar = visible.then(|| {
            let bar = ProgressBar::new(epochs as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg} ({elapsed})")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar.set_prefix("training");
            bar
        });
        Progress { bar, held_out: "test" }
    }

    /// The same bar, calling the held-out RMSE `name`.
    pub fn held_out(self, name: &'static str) -> Progress {
        Progress { held_out: name, ..self }
    }

    pub fn epoch(&self, r: &EpochReport) {
        if let Some(bar) = &self.bar {
            let metric = r.loss.metric().label();
            let train = r.train_metric().map_or(String::new(), |t| format!(", train {metric} {t:.4}"));
            let test = r.test_metric().map_or(String::new(), |t| format!(", {} {metric} {t:.4}", self.held_out));
            bar.set_message(format!("loss {:.4e}{train}{test}", r.train_loss));
            bar.set_position(r.epoch as u64);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
