//! Measuring one workload of the image build benchmark: each run in a child process (the
//! bench re-executed as a runner, `--runner MODE DIR`), its wall time, peak RSS and the
//! result file its workload wrote; rounds with the modes interleaved; the table.

use std::fs;
use std::path::Path;
use std::process::Command;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One run of one workload.
#[derive(Clone, Default)]
pub struct Sample {
    pub wall_ms: f64,
    pub rss_kib: u64,
    /// `pcr0`.. and `phase` lines of the workload's result file.
    pub pcrs: Vec<(String, String)>,
    pub phases: Vec<(String, f64)>,
}

pub fn run_once(dir: &Path, mode: &str) -> Result<Sample> {
    let result_file = dir.join(format!("result-{mode}.txt"));
    let _ = fs::remove_file(&result_file);
    let out = Command::new(std::env::current_exe()?)
        .arg("--runner")
        .arg(mode)
        .arg(dir)
        .output()?;
    if !out.status.success() {
        return Err(format!("{mode}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let mut fields = text.split_whitespace();
    let mut sample = Sample {
        wall_ms: fields.next().ok_or("no wall time")?.parse()?,
        rss_kib: fields.next().ok_or("no rss")?.parse()?,
        ..Sample::default()
    };
    for line in fs::read_to_string(&result_file).unwrap_or_default().lines() {
        match line.split_once(' ') {
            Some(("phase", rest)) => {
                let (ms, name) = rest.split_once(' ').ok_or("bad phase line")?;
                sample.phases.push((name.to_owned(), ms.parse()?));
            }
            Some((key, value)) => sample.pcrs.push((key.to_owned(), value.to_owned())),
            None => {}
        }
    }
    Ok(sample)
}

/// `runs` rounds, the modes interleaved within each.
pub fn measure(dir: &Path, modes: &[&str], runs: usize) -> Result<Vec<Vec<Sample>>> {
    let mut results = vec![Vec::new(); modes.len()];
    for _ in 0..runs {
        for (i, mode) in modes.iter().enumerate() {
            results[i].push(run_once(dir, mode)?);
        }
    }
    Ok(results)
}

pub struct Stats {
    pub best: f64,
    pub median: f64,
    pub rss_mib: f64,
    /// The fastest run.
    pub fastest: Sample,
}

pub fn stats(samples: &[Sample]) -> Stats {
    let mut walls: Vec<f64> = samples.iter().map(|s| s.wall_ms).collect();
    walls.sort_by(f64::total_cmp);
    let fastest = samples
        .iter()
        .min_by(|a, b| a.wall_ms.total_cmp(&b.wall_ms))
        .cloned()
        .unwrap_or_default();
    Stats {
        best: walls[0],
        median: walls[walls.len() / 2],
        rss_mib: samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        fastest,
    }
}

pub fn print_table(rows: &[(&str, &Stats)]) {
    println!("\n| workload | wall time, best (median) | peak RSS |\n|---|---|---|");
    for (name, s) in rows {
        println!(
            "| {name} | {:.0} ms ({:.0} ms) | {:.1} MiB |",
            s.best, s.median, s.rss_mib
        );
    }
}
