//! `cargo xtask dist`: what a router installs, in `target/dist/`:
//! * `keepalive_<version>_amd64.deb`, built by cargo-deb from `[package.metadata.deb]` in
//!   keepalive-user/Cargo.toml: the binary (XDP object embedded), the systemd unit, the config
//!   file (a conffile), man pages and shell completions;
//! * `keepalive-<version>-x86_64-linux.tar.gz`: the .deb's own file tree (`dpkg-deb
//!   --fsys-tarfile`), so both hold the same files byte for byte.
//!
//! The man pages and completions are generated here from the clap definitions (clap_mangen,
//! clap_complete), never written by hand.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};
use clap::CommandFactory as _;

/// The version the package carries (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where `dist` writes.
pub fn dist_dir() -> PathBuf {
    crate::root().join("target/dist")
}

/// The .deb `dist` writes.
pub fn deb_path() -> PathBuf {
    dist_dir().join(format!("keepalive_{VERSION}_amd64.deb"))
}

/// The tarball `dist` writes.
pub fn tarball_path() -> PathBuf {
    dist_dir().join(format!("keepalive-{VERSION}-x86_64-linux.tar.gz"))
}

/// Man pages (gzipped, as Debian policy asks) and completions for bash, zsh and fish.
fn generate(gen: &Path) -> anyhow::Result<()> {
    let man = gen.join("man");
    let completions = gen.join("completions");
    let _ = fs::remove_dir_all(gen);
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    let cmd = keepalive::cli::Cli::command();
    // keepalive.1, and keepalive-run.1 … for each subcommand.
    clap_mangen::generate_to(cmd.clone(), &man).context("generating man pages")?;
    for entry in fs::read_dir(&man)? {
        let path = entry?.path();
        let status = Command::new("gzip").args(["-9n", "-f"]).arg(&path).status()?;
        if !status.success() {
            bail!("gzip {} failed", path.display());
        }
    }
    for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish]
    {
        clap_complete::generate_to(shell, &mut cmd.clone(), "keepalive", &completions)
            .with_context(|| format!("generating {shell} completions"))?;
    }
    Ok(())
}

/// Builds the .deb and the tarball; returns their paths.
pub fn run() -> anyhow::Result<(PathBuf, PathBuf)> {
    if Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        bail!("cargo-deb is not installed: run `bash scripts/bootstrap.sh` as root (or `cargo install cargo-deb --locked`)");
    }
    fs::create_dir_all(dist_dir())?;
    generate(&crate::root().join("packaging/gen"))?;
    let deb = deb_path();
    let _ = fs::remove_file(&deb);
    crate::cargo(&[
        "deb",
        // The release profile keeps line tables for the bench's profiles; the package does
        // not need them (36 MB → 6 MB).
        "--strip",
        "--package",
        "keepalive-user",
        "--output",
        deb.to_str().context("non-UTF-8 target path")?,
    ])?;
    // The tarball is the .deb's file tree.
    let tarball = tarball_path();
    let tree = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("dpkg-deb --fsys-tarfile")?;
    let out = fs::File::create(&tarball)?;
    let status = Command::new("gzip")
        .arg("-9n")
        .stdin(tree.stdout.context("dpkg-deb stdout")?)
        .stdout(out)
        .status()?;
    if !status.success() {
        bail!("gzip of the file tree failed");
    }
    println!("{}\n{}", deb.display(), tarball.display());
    Ok((deb, tarball))
}
