//! The HTTP figures against the in-process ones: ratios, the targets of issue 22 (reported,
//! never asserted) and the table rows.

use serde::Serialize;

use crate::{
    http::HttpFigures,
    report::{TARGET_CONCURRENCY, TargetCheck, concurrent_row, cpu, duration, percentiles, rate},
    scenarios::Throughput,
};

/// Sequential 3-step workflow p50 over HTTP target, microseconds.
pub const TARGET_HTTP_SEQUENTIAL_P50_US: f64 = 1_500.0;
/// Throughput over HTTP at [`TARGET_CONCURRENCY`] clients, as a share of the in-process
/// throughput at as many callers.
pub const TARGET_HTTP_SHARE: f64 = 0.5;

/// HTTP ÷ in-process, measurement by measurement.
#[derive(Clone, Debug, Serialize)]
pub struct HttpRatios {
    /// Sequential p50 over HTTP ÷ in-process (above 1: HTTP is slower).
    pub sequential_p50: f64,
    /// What HTTP adds to the sequential p50, µs.
    pub sequential_p50_added_us: f64,
    /// Sequential wf/s over HTTP ÷ in-process.
    pub sequential_wf_per_sec: f64,
    /// Each concurrency level measured both ways.
    pub concurrent: Vec<LevelRatio>,
}

/// One concurrency level, HTTP ÷ in-process.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LevelRatio {
    /// Clients (HTTP) and callers (in-process).
    pub concurrency: usize,
    /// wf/s over HTTP ÷ in-process.
    pub wf_per_sec: f64,
    /// p50 latency over HTTP ÷ in-process.
    pub p50: f64,
}

fn p50(level: &Throughput) -> f64 {
    level.latency.map_or(f64::NAN, |latency| latency.p50_us)
}

fn divide(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

impl HttpRatios {
    /// The ratios of the HTTP measurements to the in-process ones of the same run.
    pub fn of(
        sequential: &Throughput,
        concurrent: &[Throughput],
        inproc_sequential: &Throughput,
        inproc_concurrent: &[Throughput],
    ) -> HttpRatios {
        HttpRatios {
            sequential_p50: divide(p50(sequential), p50(inproc_sequential)),
            sequential_p50_added_us: p50(sequential) - p50(inproc_sequential),
            sequential_wf_per_sec: divide(sequential.wf_per_sec, inproc_sequential.wf_per_sec),
            concurrent: concurrent
                .iter()
                .filter_map(|http| {
                    let inproc = inproc_concurrent
                        .iter()
                        .find(|level| level.concurrency == http.concurrency)?;
                    Some(LevelRatio {
                        concurrency: http.concurrency,
                        wf_per_sec: divide(http.wf_per_sec, inproc.wf_per_sec),
                        p50: divide(p50(http), p50(inproc)),
                    })
                })
                .collect(),
        }
    }
}

/// Judges the HTTP targets: sequential p50 ≤ 1.5 ms, 32 clients ≥ 50% of the in-process
/// 32-caller throughput.
pub fn check_http_targets(figures: &HttpFigures) -> Vec<TargetCheck> {
    let steps = figures.sequential.steps;
    let note = if steps == 3 {
        String::new()
    } else {
        format!(" (target is for 3 steps; ran {steps})")
    };
    let measured = p50(&figures.sequential);
    let mut checks = vec![TargetCheck {
        name: format!("HTTP sequential {steps}-step p50"),
        target: format!("≤ {}{note}", duration(TARGET_HTTP_SEQUENTIAL_P50_US)),
        measured: duration(measured),
        met: measured <= TARGET_HTTP_SEQUENTIAL_P50_US,
    }];
    if let Some(level) = figures
        .ratios
        .concurrent
        .iter()
        .find(|level| level.concurrency == TARGET_CONCURRENCY)
    {
        checks.push(TargetCheck {
            name: format!("HTTP {TARGET_CONCURRENCY} clients ÷ in-process"),
            target: format!("≥ {:.0}%", TARGET_HTTP_SHARE * 100.0),
            measured: format!("{:.1}%", level.wf_per_sec * 100.0),
            met: level.wf_per_sec >= TARGET_HTTP_SHARE,
        });
    }
    checks
}

impl HttpFigures {
    /// The table rows of section 6: the HTTP measurements, then their ratios.
    pub(crate) fn rows(&self) -> Vec<[String; 6]> {
        let mut rows = Vec::new();
        let s = &self.sequential;
        let (p50, p99) = percentiles(s);
        rows.push([
            "6".into(),
            format!("HTTP sequential: {} wf × {} steps", s.workflows, s.steps),
            format!(
                "{} wf/s, {} steps/s",
                rate(s.wf_per_sec),
                rate(s.steps_per_sec)
            ),
            p50,
            p99,
            format!("1 client, keep-alive; {}, client included", cpu(s)),
        ]);
        for level in &self.concurrent {
            rows.push(concurrent_row(
                "6",
                "HTTP concurrent ",
                ("C clients, a connection each", ", clients included"),
                level,
            ));
        }
        let l = &self.layers;
        rows.push([
            "6".into(),
            "layer: GET /healthz round trip".into(),
            format!("{} requests", l.http_round_trip.count),
            duration(l.http_round_trip.p50_us),
            duration(l.http_round_trip.p99_us),
            "HTTP alone (client, hyper, axum), no engine".into(),
        ]);
        let d = &l.detached_sequential;
        let (p50, p99) = percentiles(d);
        rows.push([
            "6".into(),
            format!("layer: start + worker + wait, {} wf", d.workflows),
            format!("{} wf/s", rate(d.wf_per_sec)),
            p50,
            p99,
            "the ?wait handler's engine calls without HTTP: Engine::start, run_worker, wait_until_ended".into(),
        ]);
        let r = &self.ratios;
        rows.push([
            "6".into(),
            "HTTP ÷ in-process: sequential".into(),
            format!("{:.1}% wf/s", r.sequential_wf_per_sec * 100.0),
            format!("{:.2}×", r.sequential_p50),
            "—".into(),
            format!(
                "p50 over HTTP ÷ in-process (2); HTTP adds {} per workflow",
                duration(r.sequential_p50_added_us)
            ),
        ]);
        for level in &r.concurrent {
            rows.push([
                "6".into(),
                format!("HTTP ÷ in-process: C={}", level.concurrency),
                format!("{:.1}% wf/s", level.wf_per_sec * 100.0),
                format!("{:.2}×", level.p50),
                "—".into(),
                "wf/s and p50 over HTTP ÷ in-process (3)".into(),
            ]);
        }
        rows
    }
}
