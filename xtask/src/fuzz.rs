//! `cargo xtask fuzz`: every cargo-fuzz target for a bounded time, from the corpus kept in
//! the repository (`fuzz/corpus/<target>`, seeded by `cargo run --example fuzz_seeds`).
//!
//! libFuzzer writes what it finds to its first corpus directory: that is a working copy under
//! `target/fuzz/corpus/<target>`, so a run leaves the repository as it was; the repository's
//! corpus is read as the second. A crash is written to `target/fuzz/artifacts/<target>/` and
//! fails the command with the file to reproduce it; each one found becomes a named regression
//! test (as `time_running_backwards_is_survived` did).

use std::process::Command;

use anyhow::{bail, Context as _};

/// The targets, in the order they run.
pub const TARGETS: [&str; 7] =
    ["frames", "analyze", "sip", "stats_request", "cli", "config", "cucm_syslog"];

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    /// Run only this target (repeatable).
    #[arg(long = "target", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
}

/// Builds the targets once, then runs each for `args.seconds`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::root();
    let fuzz = root.join("fuzz");
    let work = root.join("target/fuzz");
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    let cargo_fuzz = |extra: &[&str]| {
        let mut c = Command::new("cargo");
        c.current_dir(&fuzz).args(["+nightly", "fuzz"]).args(extra);
        c
    };
    for t in &targets {
        let status =
            cargo_fuzz(&["build", t]).status().context("cargo fuzz (cargo install cargo-fuzz)")?;
        if !status.success() {
            bail!("`cargo fuzz build {t}` failed ({status})");
        }
    }
    let mut crashed = Vec::new();
    for t in &targets {
        let corpus = work.join("corpus").join(t);
        let artifacts = work.join("artifacts").join(t);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let seeds = fuzz.join("corpus").join(t);
        eprintln!("[fuzz] {t}: {} s from {}", args.seconds, seeds.display());
        let status = cargo_fuzz(&["run", t])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            // Frames and captures are at most 64 KiB in the seeds; allow growth beyond.
            .arg("-max_len=262144")
            .arg("-print_final_stats=1")
            .status()?;
        if !status.success() {
            crashed.push(format!("{t} (artifacts in {})", artifacts.display()));
        }
    }
    if !crashed.is_empty() {
        bail!(
            "fuzzing found crashes in: {}. Reproduce with `cd fuzz && cargo +nightly fuzz run \
             TARGET ARTIFACT`, then add a named regression test",
            crashed.join(", ")
        );
    }
    Ok(())
}
