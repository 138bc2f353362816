//! Builds the XDP/tc programs (keepalive-ebpf) for bpfel-unknown-none with the nightly toolchain
//! and bpf-linker, and leaves both objects (`keepalive`, `keepalive-bench`) in OUT_DIR for
//! `include_bytes_aligned!`. Set AYA_BUILD_SKIP=1 to skip (e.g. for `cargo doc` on a machine
//! without bpf-linker).
//!
//! This is aya-build 0.2's `build_ebpf` (the same command, cfg, debug info and BTF) plus the two
//! code-generation flags aya-build has no way to pass, because it overwrites
//! `CARGO_ENCODED_RUSTFLAGS`:
//! - `-C target-cpu=v3`: the BPF ISA with 32-bit jumps and ALU (Linux 5.1 and later); LLVM's
//!   `generic` CPU has no 32-bit jumps, so every 16-bit port and EtherType test is widened first.
//!   Not v4 (Linux 6.6): routers on older kernels would refuse the object for a 1 % gain.
//! - `--cpu-features=+allows-misaligned-mem-access` (LLVM 22, passed to bpf-linker): a 2-, 4- or
//!   8-byte field at an odd packet offset becomes one load instead of a load, shift and or per
//!   byte. The verifier allows misaligned packet and map-value loads on architectures with
//!   `CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS` (x86-64, arm64; `check_pkt_ptr_alignment` and
//!   `check_generic_ptr_alignment` in kernel/bpf/verifier.c are strict only without it, for the
//!   stack, or under `BPF_F_STRICT_ALIGNMENT`).
//!
//!   The stack is the catch: LLVM applies the feature to every address, and the verifier refuses
//!   a stack access that is not naturally aligned ("misaligned stack access off ..."). A stack
//!   object of alignment below 8 that LLVM fills with a wider store (a constant `FlowKeyV4`, in
//!   the benchmark's `floor_flow`) trips it. The kernel tests load every program, so such code
//!   fails there, with the verifier's line; build the object field by field, or opaquely.
//!
//! Together they shrank the entry gate from 211 to 175 instructions, each classifier program by
//! 15–18 % and the object's text from 31 349 to 26 026 instructions (BENCHMARKS.md §2).

use std::{
    env, fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};

/// The eBPF crate, beside this one.
const EBPF_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../keepalive-ebpf");
/// The objects it builds: the shipped program and the benchmark's baselines.
const BINS: [&str; 2] = ["keepalive", "keepalive-bench"];

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        println!("cargo:warning=AYA_BUILD_SKIP is set; skipping the eBPF build");
        return Ok(());
    }
    // The eBPF crate's sources and the shared classifier compiled into it.
    println!("cargo:rerun-if-changed={EBPF_DIR}");
    println!("cargo:rerun-if-changed=../keepalive-common/src");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness {other:?}"),
    };
    // What the programs' `bpf_target_arch` cfg is for: aya-ebpf's per-architecture pt_regs.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let arch = if arch.starts_with("riscv64") { "riscv64".to_owned() } else { arch };

    // CARGO_ENCODED_RUSTFLAGS separates flags with 0x1f.
    let rustflags = [
        &format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
        "-Ctarget-cpu=v3",
        "-Clink-arg=--cpu-features=+allows-misaligned-mem-access",
    ]
    .join("\x1f");

    // A target directory of its own: cargo would otherwise wait on the lock this build holds
    // (rust-lang/cargo#6412).
    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--package", "keepalive-ebpf", "--bins"])
        .args(["--release", "--target", target, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(EBPF_DIR)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // The outer build's compiler is the stable one; the eBPF build needs nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        // Cargo reads a build script's stdout as directives; the nested build's output goes to
        // stderr, which cargo shows when this script fails.
        .stdout(Stdio::from(std::io::stderr()));
    let status = cmd.status().with_context(|| format!("running {cmd:?} (is rustup installed?)"))?;
    if !status.success() {
        bail!(
            "building keepalive-ebpf failed ({status}); the toolchain recipe is docs/TOOLCHAIN.md \
             (`bash scripts/bootstrap.sh` installs it)"
        );
    }
    for bin in BINS {
        let built = target_dir.join(target).join("release").join(bin);
        let dst = out_dir.join(bin);
        fs::copy(&built, &dst)
            .with_context(|| format!("copying {} to {}", built.display(), dst.display()))?;
    }
    Ok(())
}
