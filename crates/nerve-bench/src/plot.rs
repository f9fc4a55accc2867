//! PNG charts with `plotters`' bitmap backend. Text is drawn with an embedded font through plotters'
//! `ab_glyph` feature: its default `ttf` feature finds fonts through fontconfig, which a minimal machine
//! or container lacks, and a chart without labels is useless.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans Mono (Bitstream Vera licence, see `assets/DejaVuSansMono.LICENSE`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are the file above, parsed in a test: failing here is a broken build, not an input error.
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the embedded font does not parse");
        }
    });
}

/// One bar: `value` of `series` (a target) in `group` (a case).
pub(crate) struct Bar {
    pub(crate) group: String,
    pub(crate) series: String,
    pub(crate) value: f64,
}

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// A grouped bar chart (groups along x, one colour per series) with horizontal reference lines, such as the
/// machine's limits; references far above the bars are listed in the caption instead of squashing them.
pub(crate) fn bars(
    path: &Path,
    title: &str,
    bars: &[Bar],
    references: &[(&str, f64)],
) -> Result<()> {
    register_font();
    let mut groups: Vec<&str> = Vec::new();
    let mut series: Vec<&str> = Vec::new();
    for b in bars {
        if !groups.contains(&b.group.as_str()) {
            groups.push(&b.group);
        }
        if !series.contains(&b.series.as_str()) {
            series.push(&b.series);
        }
    }
    let top_bar = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1.0);
    let shown: Vec<(&str, f64)> = references
        .iter()
        .copied()
        .filter(|(_, v)| *v <= top_bar * 3.0)
        .collect();
    let hidden: Vec<String> = references
        .iter()
        .filter(|(_, v)| *v > top_bar * 3.0)
        .map(|(n, v)| format!("{n} {v:.0}"))
        .collect();
    let y_max = shown.iter().map(|(_, v)| *v).fold(top_bar, f64::max) * 1.15;
    let caption = if hidden.is_empty() {
        title.to_string()
    } else {
        format!("{title} (off scale: {})", hidden.join(", "))
    };

    let width = (160 + 140 * groups.len().max(1)) as u32;
    let root = BitMapBackend::new(path, (width.max(800), 520)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = groups.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FAMILY, 20))
        .margin(15)
        .x_label_area_size(90)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
        .map_err(|e| err(&e))?;
    let group_names = groups.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            // Labels only at the middle of each group.
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 {
                group_names.get(i).map_or(String::new(), |g| g.to_string())
            } else {
                String::new()
            }
        })
        .x_label_style((FAMILY, 12).into_font().transform(FontTransform::Rotate90))
        .y_desc("MB/s")
        .label_style((FAMILY, 13))
        .draw()
        .map_err(|e| err(&e))?;

    let per = series.len().max(1) as f64;
    for (s, name) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let rects = bars.iter().filter(|b| b.series == *name).map(|b| {
            let g = groups.iter().position(|g| *g == b.group).unwrap_or(0) as f64;
            let left = g + 0.1 + 0.8 * s as f64 / per;
            let right = left + 0.8 / per;
            Rectangle::new([(left, 0.0), (right, b.value)], color.filled())
        });
        chart
            .draw_series(rects)
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    for (i, (name, value)) in shown.iter().enumerate() {
        let style = ShapeStyle::from(&BLACK.mix(0.6)).stroke_width(if i == 0 { 2 } else { 1 });
        chart
            .draw_series(LineSeries::new([(0.0, *value), (n as f64, *value)], style))
            .map_err(|e| err(&e))?
            .label(format!("{name} limit {value:.0}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One line of a line chart: `points` (x, y) of `series` (a target).
pub(crate) struct Line {
    pub(crate) series: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A line chart with a logarithmic y axis (latencies span orders of magnitude between an idle and a
/// saturated server) and a horizontal reference line, such as a latency target.
pub(crate) fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line],
    reference: Option<(&str, f64)>,
) -> Result<()> {
    register_font();
    let points = lines.iter().flat_map(|l| l.points.iter());
    let x_max = points.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.05;
    let ys = points
        .map(|p| p.1)
        .chain(reference.map(|r| r.1))
        .filter(|y| *y > 0.0);
    let y_min = ys.clone().fold(f64::INFINITY, f64::min);
    let y_max = ys.fold(0.0, f64::max);
    let (y_min, y_max) = if y_min.is_finite() && y_max > 0.0 {
        (y_min / 1.5, y_max * 1.5)
    } else {
        (0.1, 10.0)
    };
    let root = BitMapBackend::new(path, (800, 520)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 20))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style((FAMILY, 13))
        .draw()
        .map_err(|e| err(&e))?;
    for (s, line) in lines.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let points: Vec<(f64, f64)> = line.points.iter().copied().filter(|p| p.1 > 0.0).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(line.series.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color.stroke_width(2)));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    if let Some((name, value)) = reference {
        let style = ShapeStyle::from(&BLACK.mix(0.6)).stroke_width(1);
        chart
            .draw_series(LineSeries::new([(0.0, value), (x_max, value)], style))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FAMILY, 13))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chart.png");
        let bars = vec![
            Bar {
                group: "1KiB-p1-durable".into(),
                series: "nerve".into(),
                value: 40.0,
            },
            Bar {
                group: "1KiB-p16-volatile".into(),
                series: "nerve".into(),
                value: 90.0,
            },
        ];
        super::bars(
            &path,
            "produce MB/s",
            &bars,
            &[("disk", 120.0), ("loopback", 3000.0)],
        )
        .unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn draws_latency_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines.png");
        let lines = vec![
            Line {
                series: "nerve".into(),
                points: vec![(10.0, 1.2), (50.0, 2.5), (90.0, 40.0)],
            },
            Line {
                series: "redis".into(),
                points: vec![(20.0, 0.8), (80.0, 0.0)],
            },
        ];
        super::lines(&path, "p99", "MB/s", "ms", &lines, Some(("5 ms", 5.0))).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
