//! `rdio bench --csv FILE` and `--plot FILE.png`.
//!
//! Both files are created (as temporary files next to their final names)
//! before anything is measured, so a bad path fails at once, and are renamed
//! into place only when complete: a failed run leaves no partial file under
//! the final name.

use crate::bench::{Results, Row, Spread};
use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// Where the plot's text font is looked for, after `$RDIO_PLOT_FONT`
/// (Debian's `fonts-dejavu-core` and `fonts-liberation` first).
const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

/// An output file being prepared: a temporary file in the destination's
/// directory, renamed over `path` by [`Pending::commit`].
#[derive(Debug)]
pub struct Pending {
    path: PathBuf,
    temp: NamedTempFile,
    what: &'static str,
}

impl Pending {
    /// Check that `path` can be written (its directory exists and takes a
    /// new file; it is not itself a directory).
    pub fn create(path: &Path, what: &'static str, suffix: &str) -> Result<Self> {
        if path.is_dir() {
            bail!("cannot write {what} {}: is a directory", path.display());
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            bail!(
                "cannot write {what} {}: no directory {}",
                path.display(),
                dir.display()
            );
        }
        let temp = tempfile::Builder::new()
            .prefix(".rdio-bench-")
            .suffix(suffix)
            .permissions(fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            // tempfile's own message names the temporary file; the kind
            // ("permission denied", ...) is what matters.
            .map_err(|e| io::Error::from(e.kind()))
            .with_context(|| format!("cannot write {what} {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            temp,
            what,
        })
    }

    fn commit(self) -> Result<()> {
        let Self { path, temp, what } = self;
        temp.persist(&path)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {what} {}", path.display()))?;
        Ok(())
    }
}

/// Write `results` as CSV, one line per row, then move it into place.
/// `--json`: every row of `results` as one JSON object on standard output
/// (the fields of the CSV, numbers as numbers, `null` where there is none).
pub fn print_json(results: &Results) {
    let rows: Vec<serde_json::Value> = results
        .rows
        .iter()
        .map(|row| {
            let spread = |s: Option<Spread>| {
                s.map(|s| serde_json::json!({ "median": s.median, "min": s.min, "max": s.max }))
            };
            serde_json::json!({
                "op": row.op,
                "kind": if row.baseline { "baseline" } else { "rdio" },
                "size_bytes": row.size,
                "queue_depth": row.depth,
                "runs": row.runs,
                "mb_per_s": row.megabytes_per_second,
                "mb_per_s_min": row.mbps_range.0,
                "mb_per_s_max": row.mbps_range.1,
                "iops": row.iops,
                "p50_us": row.p50.map(|d| d.as_secs_f64() * 1e6),
                "p99_us": row.p99.map(|d| d.as_secs_f64() * 1e6),
                "baseline": row.compared_to,
                "ratio": spread(row.ratio),
                "shaped_baseline": row.shaped_to,
                "shaped_ratio": spread(row.shaped_ratio),
                "file_baseline": row.filed_to,
                "file_ratio": spread(row.filed_ratio),
            })
        })
        .collect();
    crate::report::summary(
        "",
        serde_json::json!({
            "command": "bench",
            "transport": results.transport,
            "rows": rows,
        }),
    );
}

pub fn write_csv(mut pending: Pending, results: &Results) -> Result<()> {
    let mut text = String::from(
        "transport,op,kind,size_bytes,queue_depth,mb_per_s,iops,p50_us,p99_us,baseline,ratio,\
         runs,mb_per_s_min,mb_per_s_max,ratio_min,ratio_max,\
         shaped_baseline,shaped_ratio,shaped_ratio_min,shaped_ratio_max,\
         file_baseline,file_ratio,file_ratio_min,file_ratio_max\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let ratio = |s: Option<Spread>, pick: fn(&Spread) -> f64| {
        s.map_or(String::new(), |s| format!("{:.4}", pick(&s)))
    };
    for row in &results.rows {
        text.push_str(&format!(
            "{},{},{},{},{},{:.3},{:.1},{},{},{},{},{},{:.3},{:.3},{},{},{},{},{},{},{},{},{},{}\n",
            results.transport,
            row.op,
            if row.baseline { "baseline" } else { "rdio" },
            row.size,
            row.depth.map_or(String::new(), |d| d.to_string()),
            row.megabytes_per_second,
            row.iops,
            opt(row.p50.map(|d| d.as_secs_f64() * 1e6)),
            opt(row.p99.map(|d| d.as_secs_f64() * 1e6)),
            row.compared_to.unwrap_or(""),
            ratio(row.ratio, |s| s.median),
            row.runs,
            row.mbps_range.0,
            row.mbps_range.1,
            ratio(row.ratio, |s| s.min),
            ratio(row.ratio, |s| s.max),
            row.shaped_to.unwrap_or(""),
            ratio(row.shaped_ratio, |s| s.median),
            ratio(row.shaped_ratio, |s| s.min),
            ratio(row.shaped_ratio, |s| s.max),
            row.filed_to.unwrap_or(""),
            ratio(row.filed_ratio, |s| s.median),
            ratio(row.filed_ratio, |s| s.min),
            ratio(row.filed_ratio, |s| s.max),
        ));
    }
    let what = pending.what;
    let path = pending.path.clone();
    pending
        .temp
        .write_all(text.as_bytes())
        .and_then(|()| pending.temp.flush())
        .with_context(|| format!("cannot write {what} {}", path.display()))?;
    pending.commit()
}

/// Load the font the plot's text is drawn with (before measuring, so a
/// missing font fails at once).
pub fn register_font() -> Result<()> {
    // An explicit choice is the only candidate.
    let candidates: Vec<PathBuf> = match std::env::var_os("RDIO_PLOT_FONT") {
        Some(path) => vec![path.into()],
        None => FONT_PATHS.iter().map(PathBuf::from).collect(),
    };
    for path in candidates {
        let Ok(bytes) = fs::read(&path) else {
            continue;
        };
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
            return Ok(());
        }
    }
    if let Some(path) = std::env::var_os("RDIO_PLOT_FONT") {
        bail!(
            "--plot: RDIO_PLOT_FONT={} is not a readable TrueType font",
            Path::new(&path).display()
        );
    }
    bail!(
        "--plot needs a TrueType font: install fonts-dejavu-core (apt-get install fonts-dejavu-core) \
         or set RDIO_PLOT_FONT to a .ttf file"
    )
}

/// Draw MB/s against request size, one line per operation and queue depth,
/// baselines dashed, as a PNG, then move it into place.
/// [`register_font`] must have succeeded first.
pub fn write_plot(pending: Pending, results: &Results) -> Result<()> {
    let path = pending.path.clone();
    draw(pending.temp.path(), results)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot draw the plot {}", path.display()))?;
    pending.commit()
}

type Series = BTreeMap<(bool, &'static str, Option<u16>), Vec<(f64, f64)>>;

fn draw(file: &Path, results: &Results) -> Result<(), Box<dyn std::error::Error>> {
    let mut series: Series = BTreeMap::new();
    for row in &results.rows {
        series
            .entry((row.baseline, row.op, row.depth))
            .or_default()
            .push(((row.size as f64).log2(), row.megabytes_per_second.max(0.01)));
    }
    let rows: &[Row] = &results.rows;
    // x is log2 of the size, so that power-of-two sizes get the ticks.
    let min_size = (rows.iter().map(|r| r.size).min().unwrap_or(1) as f64).log2();
    let max_size = (rows.iter().map(|r| r.size).max().unwrap_or(1) as f64).log2();
    let max_mbps = rows
        .iter()
        .map(|r| r.megabytes_per_second)
        .fold(1.0, f64::max);
    let min_mbps = rows
        .iter()
        .map(|r| r.megabytes_per_second)
        .fold(max_mbps, f64::min)
        .max(0.01);

    let root = BitMapBackend::new(file, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "rdio bench over {}: MB/s by request size",
                results.transport
            ),
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(
            min_size.floor() - 0.5..max_size.ceil() + 0.5,
            (min_mbps / 2.0..max_mbps * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("request size (bytes)")
        .y_desc("MB/s")
        .x_labels((max_size.ceil() - min_size.floor()) as usize + 2)
        .x_label_formatter(&|v| crate::size::Size(v.exp2().round() as u64).to_string())
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (index, ((baseline, op, depth), points)) in series.into_iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        let label = match depth {
            Some(depth) => format!("{op} qd {depth}"),
            None => op.to_owned(),
        };
        let style = ShapeStyle::from(color).stroke_width(if baseline { 1 } else { 2 });
        if baseline {
            chart
                .draw_series(DashedLineSeries::new(points.iter().copied(), 8, 4, style))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                });
        } else {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart.draw_series(
            points
                .iter()
                .map(|&point| Circle::new(point, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}
