//! The report's picture: one panel per chart, stacked in one PNG.
//!
//! Drawn with plotters' bitmap backend; text goes through ab_glyph, a
//! pure-Rust rasterizer, with DejaVu Sans from Debian's fonts-dejavu-core
//! (which `cargo xtask setup` installs).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::bench::{Figure, Target, Unit};

/// The font the chart's text is drawn with.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const WIDTH: u32 = 1400;
const BAR_ROW: u32 = 34;
/// Width of a bar chart's label column: at least this, wider for longer
/// labels, at most half the picture.
const LABEL_AREA: u32 = 430;
/// About the width of a label character at 15 px (DejaVu Sans).
const LABEL_CHAR: u32 = 7;
const DISTRIBUTION_HEIGHT: u32 = 460;
const TARGET_COLOR: RGBColor = RGBColor(200, 30, 30);
const PASS_COLOR: RGBColor = RGBColor(70, 130, 180);
const FAIL_COLOR: RGBColor = RGBColor(230, 150, 60);
const PALETTE: [RGBColor; 4] = [
    RGBColor(70, 130, 180),
    RGBColor(230, 120, 40),
    RGBColor(60, 160, 90),
    RGBColor(150, 90, 170),
];

/// One panel of the picture.
pub enum Chart {
    /// A horizontal bar per figure: its value, a whisker for its spread, and
    /// its target as a red tick.
    Bars {
        title: String,
        axis: String,
        unit: Unit,
        bars: Vec<Bar>,
    },
    /// Cumulative distributions of samples on a log axis, with a limit.
    Distribution {
        title: String,
        axis: String,
        unit: Unit,
        series: Vec<(String, Vec<f64>)>,
        limit: Option<f64>,
    },
}

pub struct Bar {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub target: Option<Target>,
}

impl Chart {
    /// A bar chart of `figures`, which share `unit`.
    pub fn bars(title: &str, axis: &str, unit: Unit, figures: &[Figure]) -> Self {
        Chart::Bars {
            title: title.into(),
            axis: axis.into(),
            unit,
            bars: figures
                .iter()
                .map(|f| Bar {
                    label: f.name.clone(),
                    value: f.value,
                    low: f.spread.0,
                    high: f.spread.1,
                    target: f.target,
                })
                .collect(),
        }
    }

    fn height(&self) -> u32 {
        match self {
            Chart::Bars { bars, .. } => 110 + BAR_ROW * bars.len() as u32,
            Chart::Distribution { .. } => DISTRIBUTION_HEIGHT,
        }
    }
}

/// Draws `charts` one under the other into the PNG at `path`.
pub fn render(path: &Path, charts: &[&Chart]) -> Result<()> {
    load_font()?;
    let height: u32 = charts.iter().map(|c| c.height()).sum::<u32>().max(100);
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut rest = root;
    for chart in charts {
        let (area, below) = rest.split_vertically(chart.height());
        match chart {
            Chart::Bars {
                title,
                axis,
                unit,
                bars,
            } => draw_bars(&area, title, axis, *unit, bars)?,
            Chart::Distribution {
                title,
                axis,
                unit,
                series,
                limit,
            } => draw_distribution(&area, title, axis, *unit, series, *limit)?,
        }
        rest = below;
    }
    rest.present()
        .map_err(draw_error)
        .with_context(|| format!("write {}", path.display()))
}

/// Registers DejaVu Sans as plotters' sans-serif font.
fn load_font() -> Result<()> {
    let bytes = std::fs::read(FONT).with_context(|| {
        format!("read the chart font {FONT} (Debian's fonts-dejavu-core; `cargo xtask setup` installs it)")
    })?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font("sans-serif", style, bytes)
            .map_err(|_| anyhow!("{FONT} is not a font ab_glyph can read"))?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    axis: &str,
    unit: Unit,
    bars: &[Bar],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    if bars.is_empty() {
        return Ok(());
    }
    let n = bars.len() as i32;
    let finite = |v: f64| v.is_finite().then_some(v);
    let hi = bars
        .iter()
        .flat_map(|b| [finite(b.high), finite(b.value), b.target.map(Target::value)])
        .flatten()
        .fold(0.0f64, f64::max);
    let lo = bars
        .iter()
        .flat_map(|b| [finite(b.low), finite(b.value)])
        .flatten()
        .fold(0.0f64, f64::min);
    let pad = (hi - lo).max(1e-9) * 0.15;
    let x_range = (lo - if lo < 0.0 { pad } else { 0.0 })..(hi + pad);
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();

    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(label_area(&labels))
        .build_cartesian_2d(x_range, (0..n - 1).into_segmented())
        .map_err(draw_error)?;
    // Category i is drawn at row n-1-i, so the first bar is on top.
    let row = |i: usize| n - 1 - i as i32;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(r) if (0..n).contains(r) => labels[(n - 1 - r) as usize].clone(),
            _ => String::new(),
        })
        .x_desc(axis)
        .x_label_formatter(&|v| unit.format(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(draw_error)?;

    for (i, bar) in bars.iter().enumerate() {
        let r = row(i);
        let color = match bar.target.map(|t| t.met_by(bar.value)) {
            Some(false) => FAIL_COLOR,
            _ => PASS_COLOR,
        };
        if bar.value.is_finite() {
            let mut rect = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(r)),
                    (bar.value, SegmentValue::Exact(r + 1)),
                ],
                color.mix(0.8).filled(),
            );
            rect.set_margin(6, 6, 0, 0);
            chart.draw_series([rect]).map_err(draw_error)?;
        }
        if bar.low.is_finite() && bar.high.is_finite() {
            chart
                .draw_series([PathElement::new(
                    [
                        (bar.low, SegmentValue::CenterOf(r)),
                        (bar.high, SegmentValue::CenterOf(r)),
                    ],
                    BLACK.stroke_width(2),
                )])
                .map_err(draw_error)?;
        }
        if let Some(target) = bar.target {
            chart
                .draw_series([PathElement::new(
                    [
                        (target.value(), SegmentValue::Exact(r)),
                        (target.value(), SegmentValue::Exact(r + 1)),
                    ],
                    TARGET_COLOR.stroke_width(3),
                )])
                .map_err(draw_error)?;
        }
        if bar.value.is_finite() {
            let right_of = [bar.value, bar.high, 0.0]
                .into_iter()
                .filter(|v| v.is_finite())
                .fold(f64::NEG_INFINITY, f64::max);
            let style = ("sans-serif", 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series([Text::new(
                    format!("  {}", unit.format(bar.value)),
                    (right_of, SegmentValue::CenterOf(r)),
                    style,
                )])
                .map_err(draw_error)?;
        }
    }
    Ok(())
}

fn draw_distribution<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    axis: &str,
    unit: Unit,
    series: &[(String, Vec<f64>)],
    limit: Option<f64>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let all = series
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = all
        .chain(limit)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let (lo, hi) = if lo.is_finite() {
        (lo / 1.5, hi * 1.5)
    } else {
        (1.0, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(46)
        .y_label_area_size(70)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_desc(axis)
        .x_label_formatter(&|v| unit.format(*v))
        .y_label_formatter(&|v| format!("{:.0} %", v * 100.0))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(draw_error)?;
    for (i, (name, samples)) in series.iter().enumerate() {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                sorted
                    .iter()
                    .enumerate()
                    .map(|(k, v)| (*v, (k + 1) as f64 / n)),
                color.stroke_width(2),
            ))
            .map_err(draw_error)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    if let Some(limit) = limit {
        chart
            .draw_series([PathElement::new(
                [(limit, 0.0), (limit, 1.0)],
                TARGET_COLOR.stroke_width(3),
            )])
            .map_err(draw_error)?
            .label(format!("target: {}", unit.format(limit)))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], TARGET_COLOR.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

/// The label column of a bar chart: wide enough for the longest label
/// (within bounds).
fn label_area(labels: &[String]) -> u32 {
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u32;
    (longest * LABEL_CHAR + 16).clamp(LABEL_AREA, WIDTH / 2)
}

fn draw_error<E: std::error::Error + Send + Sync + 'static>(
    e: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_column_grows_with_the_longest_label_within_bounds() {
        let labels = |n: usize| vec!["short".to_string(), "x".repeat(n)];
        assert_eq!(label_area(&labels(10)), LABEL_AREA);
        assert_eq!(label_area(&labels(80)), 80 * LABEL_CHAR + 16);
        assert_eq!(label_area(&labels(500)), WIDTH / 2);
    }
}
