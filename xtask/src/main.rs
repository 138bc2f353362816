//! Developer workflows. `cargo xtask <command>`:
//! * `test`: formatting, clippy (-D warnings, the eBPF crate too), docs, the package, and every
//!   test layer (the README's test command).
//! * `bench`: `keepalive analyze` against tshark on a generated capture of about a million
//!   packets (`offline`), XDP cost per packet class against an empty XDP_PASS program
//!   (BPF_PROG_TEST_RUN, `bench`), then the program on a veth, the agent at 100 000 phones and
//!   the event rings' loss accounting (`live`).
//! * `dist`: the .deb and the tarball a router installs (`target/dist/`).
//! * `fuzz`: every cargo-fuzz target for a bounded time from the corpus in `fuzz/corpus`.
//! * `demo`: the lab (phones, a switch running keepalive, two CUCMs, an ASA) with a staged fault.

mod bench;
mod demo;
mod dist;
mod fuzz;
mod live;
mod offline;
mod soak;

use std::process::Command;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// fmt --check, clippy -D warnings, then all tests (kernel and live tests need root).
    Test,
    /// The benchmark suite against its baselines; writes target/bench/*.json (root).
    Bench(bench::Args),
    /// Run every fuzz target for a bounded time (nightly, cargo-fuzz; CI: 60 s each).
    Fuzz(fuzz::Args),
    /// Run the lab with a staged fault and the agent's live view (root; Ctrl-C ends).
    Demo(demo::Args),
    /// Build the .deb and the tarball a router installs, in target/dist/ (needs cargo-deb).
    Dist,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Test => test(),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Fuzz(a) => fuzz::run(&a),
        Cmd::Dist => dist::run().map(|_| ()),
    }
}

/// The workspace root (xtask's parent).
pub(crate) fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .into()
}

/// The median of `v` (sorted in place; the upper one of an even count), for the benches' trials.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs a cargo subcommand, failing with its name when it fails.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .with_context(|| format!("cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Clippy on the eBPF crate, built the way keepalive-user's build.rs builds it (nightly,
/// build-std, the target architecture cfg, BPF v3), in a target directory of its own so it never
/// invalidates that build.
fn clippy_ebpf() -> anyhow::Result<()> {
    let target_dir = root().join("target/ebpf-clippy");
    let status = Command::new("rustup")
        .args(["run", "nightly", "cargo", "clippy", "--package", "keepalive-ebpf"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--release"])
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--", "-D", "warnings"])
        .env(
            "RUSTFLAGS",
            format!("--cfg bpf_target_arch=\"{}\" -Ctarget-cpu=v3", std::env::consts::ARCH),
        )
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .context("rustup run nightly cargo clippy")?;
    if !status.success() {
        bail!("clippy on keepalive-ebpf failed ({status})");
    }
    Ok(())
}

fn test() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    clippy_ebpf()?;
    // Doc build with warnings as errors keeps the docs clean.
    let status = Command::new(env!("CARGO"))
        .args(["doc", "--no-deps", "--quiet"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .status()?;
    if !status.success() {
        bail!("`cargo doc` has warnings");
    }
    // The package test installs what `dist` builds (tests/package.rs).
    let (deb, tarball) = dist::run()?;
    let status = Command::new(env!("CARGO"))
        .args(["test", "--all-targets"])
        .env("KEEPALIVE_DEB", &deb)
        .env("KEEPALIVE_TARBALL", &tarball)
        .status()?;
    if !status.success() {
        bail!("`cargo test --all-targets` failed ({status})");
    }
    Ok(())
}
