//! Builds the XDP program (keepalive-ebpf) for bpfel-unknown-none with the nightly toolchain and
//! bpf-linker, and leaves the object in OUT_DIR for `include_bytes_aligned!`.
//! Set AYA_BUILD_SKIP=1 to skip (e.g. for `cargo doc` on a machine without bpf-linker).

fn main() -> anyhow::Result<()> {
    // aya-build watches the eBPF crate; the shared classifier is compiled into it too.
    println!("cargo:rerun-if-changed=../keepalive-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "keepalive-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../keepalive-ebpf"),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
