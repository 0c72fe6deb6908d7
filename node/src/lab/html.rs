//! The report as one self-contained HTML page: figures and inline SVG charts (deliveries over
//! time with the fault windows shaded, the latency distribution, queue depth, mailbox
//! occupancy). No script, no font, no network: it opens from a USB stick.

use std::fmt::Write;

use super::report::{BUCKETS, Report};

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 760.0;
const H: f64 = 200.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 24.0;

/// Fault windows shaded across a time chart spanning `span_ms`.
fn shade(r: &Report, span_ms: f64) -> String {
    let mut out = String::new();
    let plot = W - LEFT - 10.0;
    for (i, f) in r.faults.iter().enumerate() {
        let x0 = LEFT + plot * (f.at_ms as f64 / span_ms).min(1.0);
        let x1 = LEFT + plot * (f.end_ms.unwrap_or(f.at_ms + 1_800_000) as f64 / span_ms).min(1.0);
        let _ = write!(
            out,
            r##"<rect x="{x0:.1}" y="6" width="{:.1}" height="{:.1}" fill="{}" opacity="0.25"><title>{}</title></rect>"##,
            (x1 - x0).max(2.0),
            H - BOTTOM - 6.0,
            ["#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"][i % 5],
            esc(&format!(
                "{} ({:.2} d – {})",
                f.kind,
                f.at_ms as f64 / 86_400_000.0,
                f.end_ms.map_or("moment".into(), |e| format!(
                    "{:.2} d",
                    e as f64 / 86_400_000.0
                ))
            ))
        );
    }
    out
}

/// Axes with a y label and day ticks along x.
fn axes(y_label: &str, y_max: f64, days: f64) -> String {
    let mut out = String::new();
    let plot = W - LEFT - 10.0;
    let base = H - BOTTOM;
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#333"/><line x1="{LEFT}" y1="6" x2="{LEFT}" y2="{base}" stroke="#333"/>"##,
        W - 10.0
    );
    let step = (days / 10.0).ceil().max(1.0);
    let mut d = 0.0;
    while d <= days {
        let x = LEFT + plot * d / days.max(1.0);
        let _ = write!(
            out,
            r##"<text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            H - 8.0,
            d as u64 + 1
        );
        d += step;
    }
    let _ = write!(
        out,
        r##"<text x="4" y="14" font-size="10">{}</text><text x="4" y="{base}" font-size="10">0</text><text x="{}" y="{}" font-size="10" text-anchor="end">day</text><text x="{}" y="14" font-size="10" text-anchor="end">{}</text>"##,
        esc(y_label),
        W - 10.0,
        H - 8.0,
        LEFT - 4.0,
        fmt_num(y_max)
    );
    out
}

fn fmt_num(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// A line (step) chart of `points` (ms, value) over the run.
fn line_chart(r: &Report, title: &str, y_label: &str, points: &[(u64, f64)]) -> String {
    let span = f64::from(r.scale.virtual_days) * 86_400_000.0;
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let plot = W - LEFT - 10.0;
    let base = H - BOTTOM;
    let mut path = String::new();
    let mut last_y = base;
    for (i, (t, v)) in points.iter().enumerate() {
        let x = LEFT + plot * (*t as f64 / span).min(1.0);
        let y = base - (base - 10.0) * v / y_max;
        if i == 0 {
            let _ = write!(
                path,
                "M{LEFT:.1},{base:.1} L{x:.1},{base:.1} L{x:.1},{y:.1}"
            );
        } else {
            let _ = write!(path, " L{x:.1},{last_y:.1} L{x:.1},{y:.1}");
        }
        last_y = y;
    }
    let _ = write!(path, " L{:.1},{last_y:.1}", W - 10.0);
    format!(
        r##"<figure><figcaption>{}</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{}">{}{}<path d="{path}" fill="none" stroke="#1b6ca8" stroke-width="1.5"/></svg></figure>"##,
        esc(title),
        esc(title),
        shade(r, span),
        axes(y_label, y_max, f64::from(r.scale.virtual_days)),
    )
}

/// Bars of deliveries per hour.
fn deliveries_chart(r: &Report) -> String {
    let span = f64::from(r.scale.virtual_days) * 86_400_000.0;
    let max = r
        .delivered_per_hour
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot = W - LEFT - 10.0;
    let base = H - BOTTOM;
    let bar = plot / r.delivered_per_hour.len().max(1) as f64;
    let mut bars = String::new();
    for (h, n) in r.delivered_per_hour.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let hgt = (base - 10.0) * *n as f64 / max;
        let _ = write!(
            bars,
            r##"<rect x="{:.2}" y="{:.1}" width="{:.2}" height="{hgt:.1}" fill="#1b9e77"><title>day {} {:02}:00 — {n}</title></rect>"##,
            LEFT + bar * h as f64,
            base - hgt,
            bar.max(1.0),
            h / 24 + 1,
            h % 24
        );
    }
    format!(
        r##"<figure><figcaption>Files acknowledged per hour (fault windows shaded) / 1時間ごとの受領確認数（障害の期間を色付け）</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="deliveries per hour">{}{}{bars}</svg></figure>"##,
        shade(r, span),
        axes("acks/hour", max, f64::from(r.scale.virtual_days)),
    )
}

/// Bars of the latency buckets.
fn latency_chart(r: &Report) -> String {
    let max = r
        .latency_buckets
        .values()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot = W - LEFT - 10.0;
    let base = H - BOTTOM;
    let bar = plot / BUCKETS.len() as f64;
    let mut out = String::new();
    for (i, (label, _)) in BUCKETS.iter().enumerate() {
        let n = r.latency_buckets.get(*label).copied().unwrap_or(0);
        let hgt = (base - 16.0) * n as f64 / max;
        let x = LEFT + bar * i as f64;
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{hgt:.1}" fill="#7570b3"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{n}</text><text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            x + 4.0,
            base - hgt,
            bar - 8.0,
            x + bar / 2.0,
            base - hgt - 3.0,
            x + bar / 2.0,
            H - 8.0,
            esc(&label[2..])
        );
    }
    format!(
        r##"<figure><figcaption>Drop-to-ack latency (virtual time) / 投入から受領確認までの時間（仮想時間）</figcaption><svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="latency distribution"><line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#333"/>{out}</svg></figure>"##,
        W - 10.0
    )
}

fn dur(ms: u64) -> String {
    let s = ms / 1000;
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else if s < 172_800 {
        format!("{:.1} h", s as f64 / 3600.0)
    } else {
        format!("{:.1} d", s as f64 / 86400.0)
    }
}

/// The page.
pub fn render(r: &Report) -> String {
    let mut figures = String::new();
    let row = |k: &str, v: String| format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    for (k, v) in [
        ("sent / 送信", r.sent.to_string()),
        ("delivered / 配達（受領確認済）", r.delivered.to_string()),
        ("duplicates / 重複", r.duplicates.to_string()),
        ("lost / 消失", r.lost.to_string()),
        ("rejected / 拒否", r.rejected.to_string()),
        ("expired / 期限切れ", r.expired.to_string()),
        ("pending at the end / 終了時に未配達", r.pending.to_string()),
        ("residual bytes / 残留バイト", r.residual_bytes.to_string()),
        ("p50 drop→ack", dur(r.p50_ms)),
        ("p99 drop→ack", dur(r.p99_ms)),
        ("max drop→ack", dur(r.max_ms)),
        (
            "peak queue depth / 最大待ち行列",
            r.peak_queue_depth.to_string(),
        ),
        (
            "peak mailbox bytes / メールボックス最大量",
            r.peak_mailbox_bytes.to_string(),
        ),
    ] {
        figures.push_str(&row(k, v));
    }
    let mut paths = String::new();
    for (k, v) in &r.by_path {
        paths.push_str(&row(k, v.to_string()));
    }
    let mut faults = String::new();
    for f in &r.faults {
        let effects: Vec<String> = f.effects.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let offices = if f.offices.len() > 8 {
            format!("{} offices", f.offices.len())
        } else {
            f.offices.join(" ")
        };
        let _ = write!(
            faults,
            "<tr><td>{}</td><td>day {:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(f.kind),
            f.at_ms as f64 / 86_400_000.0 + 1.0,
            f.end_ms.map_or("—".into(), |e| dur(e - f.at_ms)),
            esc(&offices),
            esc(&effects.join(", "))
        );
    }
    let queued: Vec<(u64, f64)> = r.series.iter().map(|s| (s.t_ms, s.queued as f64)).collect();
    let mailbox: Vec<(u64, f64)> = r
        .series
        .iter()
        .map(|s| (s.t_ms, s.mailbox_bytes as f64))
        .collect();
    let s = &r.scale;
    format!(
        r##"<!DOCTYPE html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>renkei lab: {name}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 820px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-size: 13px; vertical-align: top; }}
th {{ background: #f3f3f3; font-weight: normal; }}
figure {{ margin: 1em 0; }}
figcaption {{ font-size: 13px; margin-bottom: 4px; }}
svg {{ background: #fcfcfc; border: 1px solid #ddd; max-width: 100%; height: auto; }}
.note {{ font-size: 12px; color: #555; }}
</style>
</head>
<body>
<h1>renkei lab: {name}</h1>
<p>seed {seed} · {offices} offices ({cm} care-management, {sv} service) · {dn} directory nodes · {regions} regions · {pairs} partner pairs · {files} files, {bytes} bytes · {days} simulated days</p>
<h2>Outcome / 結果</h2>
<table>{figures}</table>
<h2>Delivery by path / 経路</h2>
<table>{paths}</table>
{deliveries}
{latency}
{queue}
{mailbox}
<h2>Faults / 障害</h2>
<table><tr><th>kind</th><th>at</th><th>for</th><th>offices</th><th>effects</th></tr>{faults}</table>
<p class="note">Virtual time: the run's calendar starts on day 1 (2026-09-27). Same scenario and seed, same report (wall-clock figures are in the JSON's <code>run</code> only). Reproduce: <code>renkei lab run SCENARIO.toml --seed {seed} --report r.json --html r.html</code>.</p>
</body>
</html>
"##,
        name = esc(&r.scenario),
        seed = r.seed,
        offices = s.offices,
        cm = s.care_management,
        sv = s.service,
        dn = s.directory_nodes,
        regions = s.regions,
        pairs = s.partner_pairs,
        files = s.files,
        bytes = s.bytes,
        days = s.virtual_days,
        deliveries = deliveries_chart(r),
        latency = latency_chart(r),
        queue = line_chart(
            r,
            "Files waiting in all queues / 送信待ちファイル数",
            "files",
            &queued
        ),
        mailbox = line_chart(
            r,
            "Sealed bytes in the mailboxes / メールボックスの保管量（暗号化済み）",
            "bytes",
            &mailbox
        ),
    )
}
