//! SVG charts of benchmark and validation results (plotters).

use super::run::BenchRow;
use crate::error::{Error, Result};
use crate::validate::Comparison;
use plotters::prelude::*;
use std::path::Path;

fn plot_error<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Data(format!("{}: could not draw the plot: {e}", path.display()))
}

/// Distinct series, in first-seen order.
fn series_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

/// The legend, top right, over a translucent box.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()
}

/// Three charts in one SVG: test RMSE against wall time per backend (from `runs`), and
/// updates/s against rank (`by_rank`) and against data size (`by_size`).
pub fn plot_bench(path: &Path, runs: &[BenchRow], by_rank: &[BenchRow], by_size: &[BenchRow]) -> Result<()> {
    let err = plot_error(path);
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (top, bottom) = root.split_vertically(450);
    let (left, right) = bottom.split_horizontally(600);
    draw_rmse_over_time(path, &top, runs)?;
    for (area, rows, title, x_desc, x_of) in [
        (&left, by_rank, "Updates/s against rank", "rank", (|r: &BenchRow| r.rank as f64) as fn(&BenchRow) -> f64),
        (&right, by_size, "Updates/s against training ratings", "training ratings", |r: &BenchRow| r.ratings as f64),
    ] {
        draw_speed(path, area, rows, (title, x_desc), x_of)?;
    }
    root.present().map_err(&err)?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Test RMSE against wall time, a line per run (none when no run scored a test set).
fn draw_rmse_over_time(path: &Path, top: &Area<'_>, runs: &[BenchRow]) -> Result<()> {
    let err = plot_error(path);
    let points: Vec<(&str, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|r| (r.backend.as_str(), r.history.iter().filter_map(|e| e.test_rmse().map(|t| (e.elapsed_seconds, t))).collect()))
        .collect();
    let all: Vec<(f64, f64)> = points.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if all.is_empty() {
        return Ok(());
    }
    let xmax = all.iter().map(|p| p.0).fold(0.0, f64::max) * 1.05;
    let (ymin, ymax) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let pad = (ymax - ymin).max(1e-3) * 0.05;
    let mut chart = ChartBuilder::on(top)
        .caption("Test RMSE against wall time", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax.max(1e-3), (ymin - pad)..(ymax + pad))
        .map_err(&err)?;
    chart.configure_mesh().x_desc("seconds (training and evaluation)").y_desc("test RMSE").draw().map_err(&err)?;
    for (i, (name, p)) in points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
            .map_err(&err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    draw_legend(&mut chart).map_err(&err)?;
    Ok(())
}

/// Updates/s against `x_of` (log-log), a line per backend.
fn draw_speed(path: &Path, area: &Area<'_>, rows: &[BenchRow], (title, x_desc): (&str, &str), x_of: fn(&BenchRow) -> f64) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let err = plot_error(path);
    let (xlo, xhi) = rows.iter().map(x_of).fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
    let yhi = rows.iter().map(|r| r.updates_per_second).fold(0.0, f64::max) * 1.3;
    let ylo = rows.iter().map(|r| r.updates_per_second).fold(f64::INFINITY, f64::min) / 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((xlo / 1.5..xhi * 1.5).log_scale(), (ylo.max(1.0)..yhi.max(2.0)).log_scale())
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("updates/s")
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|v| if *v >= 1e4 { format!("{v:.0e}") } else { format!("{v:.0}") })
        .y_label_formatter(&|v| format!("{v:.1e}"))
        .draw()
        .map_err(&err)?;
    for (i, name) in series_names(rows.iter().map(|r| r.backend.as_str())).into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut p: Vec<(f64, f64)> = rows.iter().filter(|r| r.backend == name).map(|r| (x_of(r), r.updates_per_second)).collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
            .map_err(&err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(p.iter().map(|&xy| Circle::new(xy, 4, color.filled()))).map_err(&err)?;
    }
    draw_legend(&mut chart).map_err(&err)?;
    Ok(())
}

/// SGD loss as a multiple of the SVD optimum against matrix size, per backend; 1 is the optimum.
pub fn plot_validation(path: &Path, comparisons: &[Comparison]) -> Result<()> {
    let err = plot_error(path);
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let points: Vec<(String, f64, f64)> = comparisons
        .iter()
        .flat_map(|c| c.sgd.iter().map(move |s| (s.backend.clone(), (c.rows * c.cols) as f64, s.loss / c.svd_loss)))
        .collect();
    let (xlo, xhi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.1), h.max(p.1)));
    let yhi = points.iter().map(|p| p.2).fold(1.05, f64::max) * 1.02;
    let mut chart = ChartBuilder::on(&root)
        .caption("SGD loss / truncated-SVD loss (1 = the optimum; below 1 would be a bug)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xlo / 1.5..xhi * 1.5).log_scale(), 0.98..yhi)
        .map_err(&err)?;
    chart.configure_mesh().x_desc("matrix entries").y_desc("loss ratio").draw().map_err(&err)?;
    chart.draw_series(LineSeries::new([(xlo / 1.5, 1.0), (xhi * 1.5, 1.0)], BLACK.stroke_width(1))).map_err(&err)?;
    for (i, name) in series_names(points.iter().map(|p| p.0.as_str())).into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(points.iter().filter(|p| p.0 == name).map(|p| Circle::new((p.1, p.2), 5, color.filled())))
            .map_err(&err)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
    }
    draw_legend(&mut chart).map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}
