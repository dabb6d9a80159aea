//! In-process counters and histograms for `/metrics` (Prometheus text format). Gauges
//! that live in the database (requests by status, pending age) are read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the expiry-lag histogram buckets.
const LAG_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<(String, String, u16), u64>>,
    lag_counts: [AtomicU64; LAG_BUCKETS.len()],
    lag_total: AtomicU64,
    lag_sum_micros: AtomicU64,
    /// Unix seconds of the last periodic backup that verified; 0: none yet.
    backup_last_success: AtomicU64,
    backup_failures: AtomicU64,
}

impl Metrics {
    pub fn count_http(&self, method: &str, route: &str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((method.to_string(), route.to_string(), status)).or_insert(0) += 1;
        }
    }

    /// Records how late the expiry timer closed something (actual − scheduled).
    pub fn observe_expiry_lag(&self, lag_ms: i64) {
        let secs = lag_ms.max(0) as f64 / 1_000.0;
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.lag_counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lag_total.fetch_add(1, Ordering::Relaxed);
        self.lag_sum_micros.fetch_add((lag_ms.max(0) as u64).saturating_mul(1_000), Ordering::Relaxed);
    }

    pub fn backup_succeeded(&self, unix_secs: u64) {
        self.backup_last_success.store(unix_secs, Ordering::Relaxed);
    }

    pub fn backup_failed(&self) {
        self.backup_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP jitgate_backup_last_success_timestamp_seconds When the last periodic backup verified (0: none since start).\n# TYPE jitgate_backup_last_success_timestamp_seconds gauge\njitgate_backup_last_success_timestamp_seconds {}",
            self.backup_last_success.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP jitgate_backup_failures_total Periodic backups that failed.\n# TYPE jitgate_backup_failures_total counter\njitgate_backup_failures_total {}",
            self.backup_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP jitgate_http_requests_total HTTP requests answered, by route and status.");
        let _ = writeln!(out, "# TYPE jitgate_http_requests_total counter");
        if let Ok(m) = self.http.lock() {
            for ((method, route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "jitgate_http_requests_total{{method=\"{method}\",route=\"{route}\",code=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP jitgate_expiry_lag_seconds How late grants and pending requests were closed after their deadline."
        );
        let _ = writeln!(out, "# TYPE jitgate_expiry_lag_seconds histogram");
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "jitgate_expiry_lag_seconds_bucket{{le=\"{bound}\"}} {}",
                self.lag_counts[i].load(Ordering::Relaxed)
            );
        }
        let total = self.lag_total.load(Ordering::Relaxed);
        let _ = writeln!(out, "jitgate_expiry_lag_seconds_bucket{{le=\"+Inf\"}} {total}");
        let _ = writeln!(
            out,
            "jitgate_expiry_lag_seconds_sum {}",
            self.lag_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "jitgate_expiry_lag_seconds_count {total}");
    }
}
