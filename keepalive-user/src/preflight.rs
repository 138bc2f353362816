//! What `keepalive run` needs of the kernel and of its own privileges, checked before anything
//! is loaded, so that a missing piece is one sentence naming it instead of a verifier log.
//!
//! * Linux 5.18 or later: the program reads SIP payloads with `bpf_xdp_load_bytes` (5.18), and
//!   attaches through a BPF link (5.9) with CAP_BPF (5.8).
//! * BTF at `/sys/kernel/btf/vmlinux` (`CONFIG_DEBUG_INFO_BTF=y`).
//! * CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, each measured to be needed (README, "Install on a
//!   router"): without CAP_BPF no map can be created; without CAP_NET_ADMIN the kernel refuses
//!   an XDP program (`bpf_prog_load`: `BPF_PROG_TYPE_XDP` needs `capable(CAP_NET_ADMIN)`);
//!   without CAP_PERFMON the verifier runs without `allow_ptr_leaks` and `bypass_spec_v1`
//!   (`kernel/bpf/verifier.c`, both follow `perfmon_capable()`) and refuses the program. Since
//!   Linux 5.8, CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (`bpf_capable()`,
//!   `perfmon_capable()`), so root passes.
//!
//! No bpffs is needed: the agent pins nothing, and `keepalive stats` reads the agent's socket.

use std::path::Path;

/// `CAP_NET_ADMIN` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`.
const CAP_SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON` (5.8).
const CAP_PERFMON: u32 = 38;
/// `CAP_BPF` (5.8).
const CAP_BPF: u32 = 39;

/// The oldest kernel the agent runs on.
pub const MIN_KERNEL: (u32, u32) = (5, 18);

/// What is missing, in one sentence.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    /// The kernel is too old.
    #[error(
        "this kernel is Linux {0}.{1}; keepalive needs Linux {major}.{minor} or later (XDP \
         load bytes, XDP links, CAP_BPF)",
        major = MIN_KERNEL.0,
        minor = MIN_KERNEL.1
    )]
    Kernel(u32, u32),
    /// No kernel BTF.
    #[error(
        "this kernel exposes no BTF (/sys/kernel/btf/vmlinux): use a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (every major distribution's since about 2020)"
    )]
    NoBtf,
    /// A capability is missing.
    #[error(
        "missing capability {missing}: keepalive run needs CAP_BPF, CAP_NET_ADMIN and \
         CAP_PERFMON — run it as root, as the keepalive.service unit (AmbientCapabilities=), or \
         grant them with `setcap cap_bpf,cap_net_admin,cap_perfmon+ep $(command -v keepalive)`"
    )]
    Capability {
        /// The capabilities missing, e.g. `CAP_PERFMON`.
        missing: String,
    },
}

/// The effective capability set of this process (`CapEff` in `/proc/self/status`).
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The running kernel's major and minor version (`uname -r`; uname(2), not /proc/sys, which a
/// sandboxed service may not see).
fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: `uname` fills the zeroed struct it is given; `release` is NUL-terminated.
    let release = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned()
    };
    parse_release(&release)
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The capabilities `caps` lacks, by name.
fn missing_caps(caps: u64) -> Vec<&'static str> {
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let sys_admin = has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !sys_admin {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_PERFMON) && !sys_admin {
        missing.push("CAP_PERFMON");
    }
    missing
}

/// Checks the kernel and this process's capabilities; what cannot be read is not judged.
pub fn check() -> Result<(), PreflightError> {
    if let Some((major, minor)) = kernel_version() {
        if (major, minor) < MIN_KERNEL {
            return Err(PreflightError::Kernel(major, minor));
        }
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(PreflightError::NoBtf);
    }
    if let Some(caps) = effective_caps() {
        let missing = missing_caps(caps);
        if !missing.is_empty() {
            return Err(PreflightError::Capability { missing: missing.join(" and ") });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_missing_capability_is_named() {
        let all = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN) | (1 << CAP_PERFMON);
        assert!(missing_caps(all).is_empty());
        assert_eq!(missing_caps(all & !(1 << CAP_PERFMON)), ["CAP_PERFMON"]);
        assert_eq!(missing_caps(all & !(1 << CAP_BPF)), ["CAP_BPF"]);
        assert_eq!(missing_caps(all & !(1 << CAP_NET_ADMIN)), ["CAP_NET_ADMIN"]);
        assert_eq!(missing_caps(0), ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, not for CAP_NET_ADMIN.
        assert_eq!(missing_caps(1 << CAP_SYS_ADMIN), ["CAP_NET_ADMIN"]);
        let e = PreflightError::Capability { missing: "CAP_PERFMON".into() };
        assert!(e.to_string().starts_with("missing capability CAP_PERFMON: "), "{e}");
    }

    #[test]
    fn kernel_releases() {
        assert_eq!(parse_release("6.18.0-1-amd64\n"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0"), Some((5, 4)));
        assert_eq!(parse_release("garbage"), None);
        assert!(PreflightError::Kernel(5, 4).to_string().contains("needs Linux 5.18 or later"));
    }
}
