#!/usr/bin/env bash
# Idempotent machine setup for keepalive: everything a fresh Debian 12 machine (root) needs to
# build the XDP program and run every test layer. Each step checks before it acts, so a warm
# machine passes through in a few seconds. Recipe: docs/TOOLCHAIN.md.
set -euo pipefail

log() { printf '[bootstrap] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (apt-get and the kernel tests need it)"; exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Debian packages: LLVM 22 for bpf-linker, the real peers used by the tests, and what the
# package test needs (dpkg-shlibdeps for cargo-deb, setpriv, systemd-analyze, man for its verify),
# and the fleet's engine (Prometheus, promtool, Alertmanager).
PKGS=(llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev
      tshark sip-tester kamailio kamailio-tls-modules nftables iproute2 tcpreplay netsniff-ng
      libpcap-dev pkg-config procps
      dpkg-dev passwd util-linux systemd man-db gzip
      prometheus prometheus-alertmanager)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # tshark asks whether non-root users may capture; answer before installing.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Kamailio, Prometheus and Alertmanager are installed for the lab tests (which start their own,
# in namespaces); they must not run as system services.
if command -v systemctl >/dev/null 2>&1; then
    for unit in kamailio prometheus prometheus-alertmanager prometheus-node-exporter; do
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi

# Nightly with rust-src builds the eBPF crate with -Z build-std=core.
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    log "adding rust-src to the installed nightly"
    rustup component add rust-src --toolchain nightly
fi

# bpf-linker 0.13.0 linked against LLVM 22 (the nightly's LLVM major).
if ! bpf-linker --version 2>/dev/null | grep -q '0.13.0'; then
    log "building bpf-linker 0.13.0 against LLVM 22 (about a minute)"
    LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker --version 0.13.0 \
        --no-default-features --features llvm-22 --locked
fi

# cargo-fuzz for `cargo xtask fuzz` (CI fuzzes every target for 60 s).
if ! cargo fuzz --version 2>/dev/null | grep -q '0.13.2'; then
    log "installing cargo-fuzz 0.13.2"
    cargo install cargo-fuzz --version 0.13.2 --locked
fi

# cargo-deb for `cargo xtask dist` (the .deb and tarball; the package test installs them).
if ! cargo deb --version 2>/dev/null | grep -q '3.8.0'; then
    log "installing cargo-deb 3.8.0"
    cargo install cargo-deb --version 3.8.0 --locked
fi

# bpffs for pinned maps (the live agent pins its maps for `keepalive stats`).
if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null || log "could not mount bpffs at /sys/fs/bpf"
fi
log "ready"
