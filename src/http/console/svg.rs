//! Charts drawn on the server as inline SVG: no script, nothing to load, readable in a
//! screenshot. Colours come from CSS classes (the policy allows no inline styles).

use maud::{Markup, html};

/// One bar: what it is, how long it is, what is written at its end, and its CSS class.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub shown: String,
    pub class: String,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64, shown: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            value,
            shown: shown.into(),
            class: "bar".into(),
        }
    }

    pub fn class(mut self, class: impl Into<String>) -> Self {
        self.class = class.into();
        self
    }
}

fn fraction(value: f64, max: f64) -> f64 {
    if max > 0.0 && value.is_finite() {
        (value / max).clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Horizontal bars, one per row, scaled to the largest (or to `max`).
pub fn hbars(title: &str, bars: &[Bar], max: Option<f64>) -> Markup {
    const WIDTH: f64 = 640.0;
    const LABEL: f64 = 230.0;
    const VALUE: f64 = 90.0;
    const ROW: f64 = 26.0;
    let max = max.unwrap_or_else(|| bars.iter().map(|b| b.value).fold(0.0, f64::max));
    let height = ROW * bars.len().max(1) as f64 + 6.0;
    let span = WIDTH - LABEL - VALUE;
    html! {
        svg.chart.hbars viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title) {
            title { (title) }
            @if bars.is_empty() {
                text.empty x="0" y="18" { "nothing to show" }
            }
            @for (i, bar) in bars.iter().enumerate() {
                @let y = ROW * i as f64 + 3.0;
                @let w = (span * fraction(bar.value, max)).max(if bar.value > 0.0 { 2.0 } else { 0.0 });
                g {
                    title { (bar.label) ": " (bar.shown) }
                    text.label x=(LABEL - 8.0) y=(y + 16.0) text-anchor="end" { (clip(&bar.label, 34)) }
                    rect.track x=(LABEL) y=(y + 3.0) width=(span) height=(ROW - 8.0) rx="3" {}
                    rect class=(bar.class) x=(LABEL) y=(y + 3.0) width=(w) height=(ROW - 8.0) rx="3" {}
                    text.value x=(LABEL + w + 6.0) y=(y + 16.0) { (bar.shown) }
                }
            }
        }
    }
}

/// Vertical columns over labelled slots (hours, histogram buckets), scaled to `max`.
pub fn columns(title: &str, bars: &[Bar], max: f64, axis: &str) -> Markup {
    const WIDTH: f64 = 720.0;
    const HEIGHT: f64 = 230.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 46.0;
    const TOP: f64 = 18.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = (WIDTH - LEFT) / bars.len().max(1) as f64;
    // Label every n-th slot so labels do not overlap.
    let every = (bars.len() as f64 / 12.0).ceil().max(1.0) as usize;
    html! {
        svg.chart.columns viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(title) {
            title { (title) }
            line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH) y2=(TOP + plot_h) {}
            text.axis-label x=(LEFT) y=(TOP - 8.0) { (axis) }
            text.tick x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (short(max)) }
            text.tick x=(LEFT - 6.0) y=(TOP + plot_h) text-anchor="end" { "0" }
            @if bars.is_empty() {
                text.empty x=(LEFT + 10.0) y=(TOP + plot_h / 2.0) { "nothing to show" }
            }
            @for (i, bar) in bars.iter().enumerate() {
                @let h = plot_h * fraction(bar.value, max);
                @let x = LEFT + slot * i as f64;
                g {
                    title { (bar.label) ": " (bar.shown) }
                    rect class=(bar.class) x=(x + slot * 0.12) y=(TOP + plot_h - h) width=(slot * 0.76) height=(h) rx="2" {}
                    @if bar.value > 0.0 && slot >= 24.0 {
                        text.value x=(x + slot / 2.0) y=(TOP + plot_h - h - 4.0) text-anchor="middle" { (short(bar.value)) }
                    }
                    @if i % every == 0 {
                        text.tick x=(x + slot / 2.0) y=(TOP + plot_h + 16.0) text-anchor="middle" { (bar.label) }
                    }
                }
            }
        }
    }
}

/// A half-circle gauge of `value` out of `max`.
pub fn gauge(title: &str, value: f64, max: f64, shown: &str, class: &str) -> Markup {
    let (cx, cy, r) = (100.0_f64, 96.0_f64, 76.0_f64);
    let f = fraction(value, max);
    let angle = std::f64::consts::PI * (1.0 - f);
    let (x, y) = (cx + r * angle.cos(), cy - r * angle.sin());
    let track = format!("M {} {cy} A {r} {r} 0 0 1 {} {cy}", cx - r, cx + r);
    let arc = format!("M {} {cy} A {r} {r} 0 0 1 {x:.2} {y:.2}", cx - r);
    html! {
        svg.chart.gauge viewBox="0 0 200 140" role="img" aria-label=(title) {
            title { (title) ": " (shown) }
            path.track d=(track) {}
            @if f > 0.0 { path class=(class) d=(arc) {} }
            text.gauge-value x=(cx) y=(cy - 8.0) text-anchor="middle" { (shown) }
            text.gauge-label x=(cx) y=(cy + 30.0) text-anchor="middle" { (title) }
        }
    }
}

/// One bar split into the shares of each part, with a legend.
pub fn share(title: &str, parts: &[Bar]) -> Markup {
    const WIDTH: f64 = 640.0;
    let total: f64 = parts.iter().map(|p| p.value.max(0.0)).sum();
    let mut x = 0.0;
    let mut pieces = Vec::new();
    for part in parts {
        let w = WIDTH * fraction(part.value, total);
        pieces.push((x, w, part));
        x += w;
    }
    let legend_rows = parts.len().div_ceil(3);
    let height = 40.0 + 22.0 * legend_rows as f64;
    html! {
        svg.chart.share viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title) {
            title { (title) }
            rect.track x="0" y="0" width=(WIDTH) height="28" rx="4" {}
            @for (x, w, part) in &pieces {
                rect class=(part.class) x=(x) y="0" width=(w) height="28" {
                    title { (part.label) ": " (part.shown) }
                }
            }
            @for (i, part) in parts.iter().enumerate() {
                @let lx = (i % 3) as f64 * (WIDTH / 3.0);
                @let ly = 44.0 + 22.0 * (i / 3) as f64;
                rect class=(part.class) x=(lx) y=(ly) width="12" height="12" rx="2" {}
                text.label x=(lx + 18.0) y=(ly + 11.0) { (part.label) " " tspan.value { (part.shown) } }
            }
        }
    }
}

/// `text` cut to `chars` characters (the whole of it is in the bar's tooltip).
fn clip(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(chars - 1).collect();
        cut.push('…');
        cut
    }
}

/// A number short enough for an axis: `1200` → `1.2k`.
pub fn short(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 1000.0 {
        format!("{:.1}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_scaled_to_the_largest_and_escaped() {
        let chart = hbars(
            "causes",
            &[
                Bar::new("busy <b>", 10.0, "10"),
                Bar::new("rejected", 5.0, "5"),
            ],
            None,
        )
        .into_string();
        assert!(chart.contains("busy &lt;b&gt;"), "{chart}");
        // The largest bar spans the whole track (640 - 230 - 90 = 320), the other half of it.
        assert!(chart.contains(r#"width="320""#), "{chart}");
        assert!(chart.contains(r#"width="160""#), "{chart}");
    }

    #[test]
    fn a_gauge_ends_where_its_value_is() {
        let full = gauge("g", 1.0, 1.0, "100%", "ok").into_string();
        assert!(full.contains("A 76 76 0 0 1 176.00 96.00"), "{full}");
        let empty = gauge("g", 0.0, 1.0, "0%", "ok").into_string();
        assert!(!empty.contains(r#"class="ok""#), "{empty}");
        assert_eq!(short(1234.0), "1.2k");
        assert_eq!(clip("released normally", 8), "release…");
        assert_eq!(clip("busy", 8), "busy");
        assert_eq!(short(0.5), "0.50");
    }
}
