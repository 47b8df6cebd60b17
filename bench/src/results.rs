//! The figures of one run of the collector ingest benchmark (`raw-index`,
//! `ingest-run`), kept as JSON so that `ingest-report` can set the runs of
//! one script side by side, each against the raw tantivy baseline, and an
//! OTLP run also against raw tantivy decoding the same OTLP exports.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Acknowledgement latencies of the posted batches, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Acks {
    pub batches: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub case: String,
    /// Records indexed (acknowledged, for a collector run).
    pub records: u64,
    /// Their size as NDJSON lines, the raw size every figure is read
    /// against.
    pub ndjson_bytes: u64,
    /// The bytes sent (request bodies acknowledged), or read.
    pub wire_bytes: u64,
    /// From the first record to the commit that made the last searchable.
    pub wall_secs: f64,
    /// CPU seconds (user + system) of the indexing process over the wall
    /// time: the collector's, or raw tantivy's.
    pub cpu_secs: f64,
    /// CPU seconds of the load generator (posting only), when separate.
    pub client_cpu_secs: Option<f64>,
    /// Peak resident set of the indexing process, KiB.
    pub peak_rss_kib: u64,
    pub rss_note: String,
    /// The index on disk (blocks, as `du` counts) at the end.
    pub index_bytes: u64,
    pub searchable_p50_secs: Option<f64>,
    pub searchable_p99_secs: Option<f64>,
    pub ack: Option<Acks>,
    /// 429 and 503 answers (each retried after its `Retry-After`).
    pub busy: u64,
    /// Requests the collector counts as refused for a full queue.
    pub overloaded: u64,
    /// Other failed requests.
    pub errors: u64,
    /// `/proc/loadavg`'s three averages when the run started.
    pub load: String,
    pub note: String,
}

impl RunResult {
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.wall_secs
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.ndjson_bytes as f64 / 1e6 / self.wall_secs
    }

    pub fn records_per_cpu_sec(&self) -> f64 {
        self.records as f64 / self.cpu_secs
    }

    pub fn mb_per_cpu_sec(&self) -> f64 {
        self.ndjson_bytes as f64 / 1e6 / self.cpu_secs
    }

    pub fn index_ratio(&self) -> f64 {
        self.index_bytes as f64 / self.ndjson_bytes as f64
    }
}

/// Writes `result` as JSON to `path` (and says so), or to stdout.
pub fn write_result(result: &RunResult, path: Option<&Path>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(result)?;
    match path {
        Some(path) => {
            fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
            eprintln!("{}: {}", result.case, path.display());
        }
        None => println!("{json}"),
    }
    Ok(())
}

/// The case of raw tantivy committing once.
pub const RAW: &str = "raw tantivy";
/// The case of raw tantivy committing as often as the collector, followed
/// by its interval (`... 500 ms`).
pub const RAW_COMMITTING: &str = "raw tantivy, a commit every";
/// Added to a raw case measured to the end of its merges.
pub const MERGED: &str = ", to the end of its merges";
/// Added to a raw case that decoded each chunk's OTLP logs export with
/// prost before indexing the chunk's lines (`raw-index
/// --decode-otlp-batch`): `raw tantivy, a commit every 500 ms, decoding
/// OTLP exports`.
pub const DECODING_OTLP: &str = ", decoding OTLP exports";
/// What a collector run's case holds when its load is OTLP (as
/// `bench/ingest.sh` names it: `OTLP/HTTP protobuf /v1/logs`).
pub const OTLP: &str = "OTLP";

/// Prints the runs of `paths` as one table, each against the first
/// `raw tantivy` run among them, and against the first raw tantivy run
/// that committed as often as the collector, if any; below it, each OTLP
/// run against the first raw tantivy run that committed as often and
/// decoded the same records' OTLP exports, if any.
pub fn report(paths: &[impl AsRef<Path>]) -> anyhow::Result<()> {
    let runs = paths
        .iter()
        .map(|path| {
            let path = path.as_ref();
            let text =
                fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<RunResult>(&text)
                .with_context(|| format!("parsing {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!("{}", table(&runs));
    Ok(())
}

fn table(runs: &[RunResult]) -> String {
    let baseline = runs.iter().find(|r| r.case == RAW);
    let committing = runs.iter().find(|r| {
        r.case.starts_with(RAW_COMMITTING)
            && !r.case.ends_with(MERGED)
            && !r.case.contains(DECODING_OTLP)
    });
    let decoding = runs
        .iter()
        .find(|r| r.case.starts_with(RAW_COMMITTING) && r.case.ends_with(DECODING_OTLP));
    let mut out = String::new();
    out.push_str(
        "| case | records | NDJSON MB | wall s | records/s | MB/s | CPU s | records/s per core | MB/s per core | vs raw (per core / wall) | vs raw committing as often (per core) | searchable p50 / p99 s | ack p50 / p99 ms | index / NDJSON | peak RSS MiB | 429/503 | load (1, 5, 15 min) |\n",
    );
    out.push_str(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for run in runs {
        let versus = match baseline {
            Some(raw) => format!(
                "{:.2} / {:.2}",
                run.records_per_cpu_sec() / raw.records_per_cpu_sec(),
                run.records_per_sec() / raw.records_per_sec()
            ),
            None => "-".to_owned(),
        };
        let versus_committing = committing.map_or("-".to_owned(), |raw| {
            format!(
                "{:.2}",
                run.records_per_cpu_sec() / raw.records_per_cpu_sec()
            )
        });
        let searchable = match (run.searchable_p50_secs, run.searchable_p99_secs) {
            (Some(p50), Some(p99)) => format!("{p50:.2} / {p99:.2}"),
            _ => "-".to_owned(),
        };
        let ack = run.ack.map_or("-".to_owned(), |a| {
            format!("{:.0} / {:.0}", a.p50_ms, a.p99_ms)
        });
        let cpu = match run.client_cpu_secs {
            Some(client) => format!("{:.1} (+{client:.1} client)", run.cpu_secs),
            None => format!("{:.1}", run.cpu_secs),
        };
        out.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.1} | {cpu} | {:.0} | {:.1} | {versus} | {versus_committing} | {searchable} | {ack} | {:.2} | {} | {} | {} |\n",
            run.case,
            run.records,
            run.ndjson_bytes as f64 / 1e6,
            run.wall_secs,
            run.records_per_sec(),
            run.mb_per_sec(),
            run.records_per_cpu_sec(),
            run.mb_per_cpu_sec(),
            run.index_ratio(),
            run.peak_rss_kib / 1024,
            run.busy,
            run.load,
        ));
    }
    out.push('\n');
    if let Some(decoding) = decoding {
        let otlp_runs = runs
            .iter()
            .filter(|r| !r.case.starts_with(RAW) && r.case.contains(OTLP));
        let mut any = false;
        for run in otlp_runs {
            any = true;
            out.push_str(&format!(
                "{}, per core: {:.2} against {} (the prost decode of the same records included)",
                run.case,
                run.records_per_cpu_sec() / decoding.records_per_cpu_sec(),
                decoding.case
            ));
            if let Some(raw) = committing {
                out.push_str(&format!(
                    "; {:.2} against {}",
                    run.records_per_cpu_sec() / raw.records_per_cpu_sec(),
                    raw.case
                ));
            }
            out.push('\n');
        }
        if any {
            out.push('\n');
        }
    }
    for run in runs {
        out.push_str(&format!("- {}: {}", run.case, run.note));
        if !run.rss_note.is_empty() {
            out.push_str(&format!("; peak RSS: {}", run.rss_note));
        }
        if run.overloaded > 0 || run.errors > 0 {
            out.push_str(&format!(
                "; refused for a full queue (collector's count): {}; other errors: {}",
                run.overloaded, run.errors
            ));
        }
        out.push('\n');
    }
    out
}

/// (blocks on disk as `du` counts them, apparent size), in bytes, of the
/// files under `dir`.
pub fn disk_usage(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut disk, mut apparent) = (0, 0);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (d, a) = disk_usage(&entry.path())?;
            disk += d;
            apparent += a;
        } else {
            disk += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    Ok((disk, apparent))
}

/// `/proc/loadavg`'s three load averages, or `?`.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(case: &str, records: u64, wall: f64, cpu: f64) -> RunResult {
        RunResult {
            case: case.to_owned(),
            records,
            ndjson_bytes: records * 700,
            wire_bytes: records * 700,
            wall_secs: wall,
            cpu_secs: cpu,
            client_cpu_secs: None,
            peak_rss_kib: 204_800,
            rss_note: String::new(),
            index_bytes: records * 350,
            searchable_p50_secs: None,
            searchable_p99_secs: None,
            ack: None,
            busy: 0,
            overloaded: 0,
            errors: 0,
            load: "1.00 0.50 0.25".to_owned(),
            note: "n".to_owned(),
        }
    }

    #[test]
    fn each_run_is_read_against_the_raw_baseline() {
        let raw = run("raw tantivy", 1000, 1.0, 2.0);
        let native = run("native", 1000, 2.0, 2.5);
        let text = table(&[raw, native]);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[1].contains("| 1.00 / 1.00 | - |"), "{}", rows[1]);
        assert!(rows[2].contains("| 0.80 / 0.50 | - |"), "{}", rows[2]);
        assert!(rows[2].contains("| 0.50 |"), "index ratio: {}", rows[2]);
    }

    #[test]
    fn each_run_is_also_read_against_raw_tantivy_committing_as_often() {
        let raw = run(RAW, 1000, 1.0, 2.0);
        let committing = format!("{RAW_COMMITTING} 500 ms");
        let merged = run(&format!("{committing}{MERGED}"), 1000, 1.0, 1.0);
        let text = table(&[
            raw,
            merged,
            run(&committing, 1000, 1.0, 2.5),
            run("native", 1000, 2.0, 3.125),
        ]);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 5, "{text}");
        // Against the committing run, not the one measured to its merges.
        assert!(rows[3].contains("| 0.80 / 1.00 | 1.00 |"), "{}", rows[3]);
        assert!(rows[4].contains("| 0.64 / 0.50 | 0.80 |"), "{}", rows[4]);
    }

    #[test]
    fn an_otlp_run_is_also_read_against_raw_tantivy_decoding_otlp() {
        let committing = format!("{RAW_COMMITTING} 500 ms");
        let decoding = format!("{committing}{DECODING_OTLP}");
        let otlp = "OTLP/HTTP protobuf /v1/logs";
        let runs = [
            run(RAW, 1000, 1.0, 2.0),
            // Both before the plain committing row: neither may take its
            // place, nor the merged one the decoding row's.
            run(&format!("{decoding}{MERGED}"), 1000, 1.0, 1.0),
            run(&decoding, 1000, 1.0, 3.0),
            run(&committing, 1000, 1.0, 2.5),
            run("native /v1/ingest", 1000, 2.0, 3.125),
            run(otlp, 1000, 2.0, 3.75),
        ];
        let text = table(&runs);
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 7, "{text}");
        // The columns read as before, against the plain committing run.
        assert!(rows[3].contains("| 0.67 / 1.00 | 0.83 |"), "{}", rows[3]);
        assert!(rows[4].contains("| 0.80 / 1.00 | 1.00 |"), "{}", rows[4]);
        assert!(rows[5].contains("| 0.64 / 0.50 | 0.80 |"), "{}", rows[5]);
        assert!(rows[6].contains("| 0.53 / 0.50 | 0.67 |"), "{}", rows[6]);
        // One line for the OTLP run only: 3.0 / 3.75 and 2.5 / 3.75.
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("per core:")).collect();
        assert_eq!(
            lines,
            [format!(
                "{otlp}, per core: 0.80 against {decoding} (the prost decode of the same records included); 0.67 against {committing}"
            )],
            "{text}"
        );

        // Without the decoding run, the same table and no such line.
        let without: Vec<RunResult> = runs
            .iter()
            .filter(|r| !r.case.contains(DECODING_OTLP))
            .cloned()
            .collect();
        let text = table(&without);
        assert!(!text.contains("per core:"), "{text}");
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        assert!(rows[4].contains("| 0.53 / 0.50 | 0.67 |"), "{}", rows[4]);
    }
}
