//! The package a router installs (root; `cargo xtask test` builds it first with `cargo xtask
//! dist` and names it in KEEPALIVE_DEB and KEEPALIVE_TARBALL).
//!
//! Its file list and dependencies are checked, it is installed with `dpkg -i` on this machine,
//! the unit passes `systemd-analyze verify`, and the installed binary is run the way the unit
//! runs it (the unit's user, group and capabilities, read from the installed unit, through
//! `setpriv`, since systemd is not PID 1 here) on a router in namespaces the test creates: it
//! attaches, records a real SCCP exchange, `keepalive stats` answers a member of group
//! keepalive and refuses anyone else with a sentence, and with any one capability fewer it
//! fails naming that capability. `dpkg -r` leaves the edited config, `dpkg --purge` removes it
//! and the user. Whatever happens, the package is purged at the end.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use common::{sccp_phone, RouterLab};
use serde_json::Value;

/// Where systemd finds the unit; the package ships it in `/usr/lib/systemd/system` (cargo-deb's
/// and Debian 13's place), the same directory on every merged-/usr system (Debian 12, Ubuntu
/// 20.04 and later).
const UNIT: &str = "/lib/systemd/system/keepalive.service";
const UNIT_SHIPPED: &str = "/usr/lib/systemd/system/keepalive.service";
const CONF: &str = "/etc/keepalive/keepalive.toml";
const BIN: &str = "/usr/bin/keepalive";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Purges the package and the runtime directory however the test ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "keepalive"]);
        let _ = std::fs::remove_dir_all("/run/keepalive");
    }
}

/// The artifacts `cargo xtask dist` built, or None when the test is to be skipped.
fn artifacts() -> Option<(PathBuf, PathBuf)> {
    let test = "the_package_installs_runs_as_its_unit_and_is_removed";
    if !common::have_root(test) {
        return None;
    }
    match (std::env::var_os("KEEPALIVE_DEB"), std::env::var_os("KEEPALIVE_TARBALL")) {
        (Some(d), Some(t)) => Some((d.into(), t.into())),
        _ if std::env::var_os("KEEPALIVE_REQUIRE_ROOT").is_some() => {
            panic!(
                "{test}: KEEPALIVE_DEB is unset: run `cargo xtask test`, which builds the package"
            )
        }
        _ => {
            eprintln!(
                "skipped {test}: KEEPALIVE_DEB unset (`cargo xtask test` builds the package)"
            );
            None
        }
    }
}

/// `Key=` values of the unit's `[Service]` section.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key}= not in the unit"))
        .to_string()
}

/// The unit's ambient capabilities as setpriv's list (`+bpf,+net_admin,+perfmon`), without
/// `drop`.
fn caps(unit: &str, drop: Option<&str>) -> String {
    let ambient = unit_value(unit, "AmbientCapabilities");
    assert_eq!(ambient, unit_value(unit, "CapabilityBoundingSet"), "ambient = bounding set");
    ambient
        .split_whitespace()
        .filter(|c| Some(*c) != drop)
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The unit's ExecStart, in `ns`, as its user and group with `caps` only.
fn as_the_unit(unit: &str, ns: &str, caps: &str) -> Command {
    let user = unit_value(unit, "User");
    let group = unit_value(unit, "Group");
    assert_eq!(unit_value(unit, "NoNewPrivileges"), "yes");
    let exec = unit_value(unit, "ExecStart");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "setpriv"])
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--init-groups")
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg("--no-new-privs")
        .arg("--")
        .args(exec.split_whitespace())
        .env("RUST_BACKTRACE", "0");
    cmd
}

fn gid(group: &str) -> String {
    ok("getent", &["group", group]).split(':').nth(2).unwrap().to_string()
}

/// `keepalive stats` as user nobody with `groups` (none: `--clear-groups`).
fn stats_as_nobody(groups: Option<&str>) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534"]);
    match groups {
        Some(g) => cmd.arg(format!("--groups={g}")),
        None => cmd.arg("--clear-groups"),
    };
    cmd.args([BIN, "stats", "--format", "json"]).env("RUST_BACKTRACE", "0").output().unwrap()
}

/// The paths of a `tar -tv` listing (`dpkg-deb -c` prints the same), sorted.
fn files(listing: &str) -> Vec<String> {
    let mut names: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|n| n.trim_start_matches('.').trim_end_matches('/').to_string())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}

#[test]
fn the_package_installs_runs_as_its_unit_and_is_removed() {
    let Some((deb, tarball)) = artifacts() else { return };
    let deb = deb.to_str().unwrap().to_string();
    assert!(
        !run("dpkg", &["-s", "keepalive"]).status.success(),
        "keepalive is already installed on this machine: remove it before the test"
    );
    let _purge = Purge;

    // What ships: the product only, and Depends on libc only.
    let listed = files(&ok("dpkg-deb", &["-c", &deb]));
    for want in [
        BIN,
        UNIT_SHIPPED,
        CONF,
        "/usr/share/man/man1/keepalive.1.gz",
        "/usr/share/man/man1/keepalive-run.1.gz",
        "/usr/share/man/man1/keepalive-check-config.1.gz",
        "/usr/share/bash-completion/completions/keepalive",
        "/usr/share/zsh/vendor-completions/_keepalive",
        "/usr/share/fish/vendor_completions.d/keepalive.fish",
    ] {
        assert!(listed.iter().any(|f| f == want), "{want} is not in the package: {listed:#?}");
    }
    let allowed =
        ["/usr/bin/keepalive", "/usr/share/", "/etc/keepalive", "/usr/lib/systemd/system"];
    for f in &listed {
        assert!(
            allowed.iter().any(|a| f.starts_with(a) || a.starts_with(f.as_str())),
            "unexpected file in the package: {f}"
        );
    }
    let depends = ok("dpkg-deb", &["-f", &deb, "Depends"]);
    for dep in depends.trim().split(',').map(str::trim) {
        assert!(dep.starts_with("libc6") || dep.starts_with("libgcc-s1"), "Depends: {depends}");
    }
    // The tarball holds the same files, and the same binary.
    let in_tar = files(&ok("tar", &["-tvzf", tarball.to_str().unwrap()]));
    assert_eq!(in_tar, listed, "the tarball and the .deb hold the same files");
    let tmp = std::env::temp_dir().join(format!("keepalive-pkg-{}", std::process::id()));
    let (from_deb, from_tar) = (tmp.join("deb"), tmp.join("tar"));
    std::fs::create_dir_all(&from_tar).unwrap();
    ok("dpkg-deb", &["-x", &deb, from_deb.to_str().unwrap()]);
    ok("tar", &["-xzf", tarball.to_str().unwrap(), "-C", from_tar.to_str().unwrap()]);
    let bin_deb = std::fs::read(from_deb.join("usr/bin/keepalive")).unwrap();
    assert_eq!(bin_deb, std::fs::read(from_tar.join("usr/bin/keepalive")).unwrap());
    // Only the product: the bench object's programs and map are not in the shipped binary.
    for name in ["keepalive_empty", "keepalive_touch", "FLOOR_RINGBUF", "floor_clock"] {
        let found = bin_deb.windows(name.len()).any(|w| w == name.as_bytes());
        assert!(!found, "the shipped binary contains the bench's `{name}`");
    }
    let _ = std::fs::remove_dir_all(&tmp);

    // Install: the user and group exist, the unit verifies.
    ok("dpkg", &["-i", &deb]);
    ok("getent", &["passwd", "keepalive"]);
    let verify = run("systemd-analyze", &["verify", UNIT]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let security = run("systemd-analyze", &["security", "--offline=true", UNIT]);
    let report = String::from_utf8_lossy(&security.stdout).into_owned();
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for keepalive.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("systemd-analyze security: {report}"));
    // README states the score; this keeps it from quietly getting worse.
    eprintln!("systemd-analyze security: exposure {exposure}");
    assert!(exposure <= 1.8, "exposure {exposure} (README states it):\n{report}");
    let unit = std::fs::read_to_string(UNIT).unwrap();

    // The engineer's edit of the conffile: the router's phone-side interface.
    let lab = RouterLab::new();
    let shipped = std::fs::read_to_string(CONF).unwrap();
    // Both router interfaces: each direction is seen on ingress.
    let edited =
        format!("{shipped}\niface = [\"{}\", \"{}\"]\njson = true\n", lab.r_phone, lab.r_cucm);
    std::fs::write(CONF, &edited).unwrap();
    ok(BIN, &["check-config", CONF]);
    // RuntimeDirectory=keepalive, as systemd would create it for the unit.
    assert_eq!(unit_value(&unit, "RuntimeDirectory"), "keepalive");
    let mode = unit_value(&unit, "RuntimeDirectoryMode");
    let _ = std::fs::remove_dir_all("/run/keepalive");
    ok("install", &["-d", "-o", "keepalive", "-g", "keepalive", "-m", &mode, "/run/keepalive"]);

    // With one capability fewer, the sentence names it.
    for missing in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"] {
        let out = as_the_unit(&unit, &lab.ns_router, &caps(&unit, Some(missing))).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started without {missing}: {err}");
        assert!(err.contains(&format!("missing capability {missing}: ")), "{missing}: {err}");
    }

    // As the unit: attach, record a real SCCP exchange.
    let mut agent = as_the_unit(&unit, &lab.ns_router, &caps(&unit, None))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(agent.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("msg=\"stats socket\"") {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let _ = agent.kill();
            panic!("the agent stopped before serving stats: {log}");
        }
        log.push_str(&line);
    }
    sccp_phone(&lab, "SEP00AB00CD0042", 3, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(300));
    let socket = Path::new("/run/keepalive/keepalive.sock");
    let meta = std::fs::metadata(socket).unwrap();
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid().to_string(), gid("keepalive"), "socket group");
    let member = stats_as_nobody(Some(&gid("keepalive")));
    let other = stats_as_nobody(None);
    // SAFETY: kill on our child's pid (`ip netns exec` and setpriv exec in place).
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().unwrap();
    assert!(status.success(), "the agent's exit: {status}");
    assert!(member.status.success(), "member: {}", String::from_utf8_lossy(&member.stderr));
    let snap: Value = serde_json::from_slice(&member.stdout).unwrap();
    let phone = snap["report"]["phones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["device"] == "SEP00AB00CD0042")
        .unwrap_or_else(|| panic!("the phone was not tracked: {snap}"))
        .clone();
    assert_eq!((phone["keepalives"].as_u64(), phone["acks"].as_u64()), (Some(3), Some(3)));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success(), "stats for a non-member: {err}");
    assert!(err.contains("permission denied on /run/keepalive/keepalive.sock"), "{err}");
    assert!(err.contains("group keepalive"), "{err}");

    // Remove: the binary and the unit go, the edited config stays; purge takes it and the user.
    ok("dpkg", &["-r", "keepalive"]);
    assert!(!Path::new(BIN).exists() && !Path::new(UNIT).exists(), "removed");
    assert_eq!(std::fs::read_to_string(CONF).unwrap(), edited, "dpkg -r keeps the edited config");
    ok("dpkg", &["--purge", "keepalive"]);
    assert!(!Path::new(CONF).exists(), "purge removes the config");
    assert!(!run("getent", &["passwd", "keepalive"]).status.success(), "purge removes the user");
    assert!(!run("getent", &["group", "keepalive"]).status.success(), "purge removes the group");
}
