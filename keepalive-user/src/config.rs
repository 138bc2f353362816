//! The configuration file of `keepalive run --config FILE` (and `keepalive check-config FILE`).
//!
//! The file is TOML whose keys are the long names of `run`'s flags (`iface = ["eth1"]`,
//! `max-phones = 200000`, `expire = "1h"`), so it has exactly the options of the command line and
//! no second set of parsers: each value is turned into the flag it stands for and goes through
//! the same clap validation. A flag given on the command line wins over the file's key; a list
//! (`iface`, `port`) given on the command line replaces the file's list.
//!
//! Everything is checked before anything is attached: an unknown key, a value of the wrong TOML
//! type or a value the flag refuses is an error naming the file, the line and the key.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::{error::ErrorKind, ArgAction, CommandFactory as _, Parser as _};
use toml::Spanned;

use crate::cli::{Cli, Command, RunArgs};

/// Flags of `run` that have no key in the file: the file itself, and clap's own.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "version"];

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A problem at a place in the file.
    #[error("{path}:{line}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong, naming the key.
        message: String,
    },
    /// The options, file and command line together, are refused (e.g. no interface at all).
    #[error("{0}")]
    Combined(String),
}

/// One key of the file as the flag it stands for: `--max-phones 1000`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Setting {
    key: String,
    line: usize,
    args: Vec<String>,
}

/// The file's settings, in file order, each already accepted by its flag's parser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    path: PathBuf,
    settings: Vec<Setting>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// The `run` subcommand's clap definition.
fn run_command() -> clap::Command {
    Cli::command().find_subcommand("run").cloned().expect("`run` is a subcommand")
}

/// What kind of value a flag takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `--mirror`: `true` or `false`.
    Switch,
    /// `--iface A --iface B`: a list (a single value is a list of one).
    List,
    /// `--expire 1h`: one value.
    One,
}

/// The keys the file takes: the long flag names of `run`, with their kind.
fn keys() -> Vec<(String, Kind)> {
    run_command()
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            if NOT_IN_FILE.contains(&long) {
                return None;
            }
            let kind = match a.get_action() {
                ArgAction::SetTrue => Kind::Switch,
                ArgAction::Append => Kind::List,
                _ => Kind::One,
            };
            Some((long.to_string(), kind))
        })
        .collect()
}

/// A scalar TOML value as the text of a flag's value.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

impl ConfigFile {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        Self::parse(path, &text)
    }

    /// Validates `text`, read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let at = |offset: usize, message: String| ConfigError::At {
            path: path.to_path_buf(),
            line: line_of(text, offset),
            message,
        };
        let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> =
            toml::from_str(text).map_err(|e| {
                let offset = e.span().map_or(0, |s| s.start);
                at(offset, e.message().trim().to_string())
            })?;
        let known = keys();
        let mut settings = Vec::new();
        for (key, value) in &table {
            let name = key.get_ref().as_str();
            let offset = key.span().start;
            let Some(&(_, kind)) = known.iter().find(|(k, _)| k == name) else {
                let names: Vec<&str> = known.iter().map(|(k, _)| k.as_str()).collect();
                return Err(at(
                    offset,
                    format!("unknown key `{name}` (the keys are: {})", names.join(", ")),
                ));
            };
            let flag = format!("--{name}");
            let args = match (kind, value.get_ref()) {
                (Kind::Switch, toml::Value::Boolean(true)) => vec![flag],
                (Kind::Switch, toml::Value::Boolean(false)) => vec![],
                (Kind::Switch, _) => {
                    return Err(at(offset, format!("`{name}` must be true or false")));
                }
                (Kind::List, toml::Value::Array(items)) => {
                    let mut args = Vec::new();
                    for item in items {
                        let v = scalar(item).ok_or_else(|| {
                            at(offset, format!("`{name}` must be a list of strings"))
                        })?;
                        args.extend([flag.clone(), v]);
                    }
                    args
                }
                (_, v) => match scalar(v) {
                    Some(v) => vec![flag, v],
                    None => {
                        return Err(at(offset, format!("`{name}` must be a string or a number")));
                    }
                },
            };
            // The flag's own parser judges the value, on a command line that is otherwise
            // complete (`--iface` is required).
            let mut argv: Vec<String> = ["keepalive", "run"].map(String::from).to_vec();
            if name != "iface" {
                argv.extend(["--iface".into(), "lo".into()]);
            }
            argv.extend(args.iter().cloned());
            // What one key needs of another (`metrics-per-phone` needs `metrics`, `json` excludes
            // `events`) is judged once all are merged.
            let across = [ErrorKind::MissingRequiredArgument, ErrorKind::ArgumentConflict];
            match Cli::try_parse_from(&argv) {
                Err(e) if !across.contains(&e.kind()) => {
                    let why = e.to_string();
                    let why = why.lines().next().unwrap_or("").trim_start_matches("error: ");
                    return Err(at(offset, format!("`{name}`: {why}")));
                }
                _ => {}
            }
            settings.push(Setting { key: name.to_string(), line: line_of(text, offset), args });
        }
        settings.sort_by_key(|s| s.line);
        Ok(Self { path: path.to_path_buf(), settings })
    }

    /// The keys the file sets, in file order.
    pub fn keys(&self) -> Vec<&str> {
        self.settings.iter().map(|s| s.key.as_str()).collect()
    }

    /// The `run` options of `cmdline` (a whole `keepalive run … --config FILE` command line)
    /// with this file's keys filling in what the command line does not give.
    pub fn merge(&self, cmdline: &[OsString]) -> Result<RunArgs, ConfigError> {
        let given = given_on_command_line(cmdline)?;
        let mut argv: Vec<OsString> = cmdline.to_vec();
        for s in &self.settings {
            if !given.contains(&s.key) {
                argv.extend(s.args.iter().map(OsString::from));
            }
        }
        let merged = parse_run(&argv).map_err(|e| {
            ConfigError::Combined(format!("{} with the command line: {e}", self.path.display()))
        })?;
        match merged {
            a if a.ifaces.is_empty() => Err(ConfigError::Combined(format!(
                "no interface to attach to: give --iface or `iface = [\"eth1\"]` in {}",
                self.path.display()
            ))),
            a => Ok(a),
        }
    }
}

fn parse_run(argv: &[OsString]) -> Result<RunArgs, ConfigError> {
    let cli = Cli::try_parse_from(argv).map_err(|e| ConfigError::Combined(e.to_string()))?;
    match cli.command {
        Command::Run(a) => Ok(*a),
        _ => Err(ConfigError::Combined("not a `keepalive run` command line".into())),
    }
}

/// The long names of the `run` flags `cmdline` gives itself.
fn given_on_command_line(cmdline: &[OsString]) -> Result<Vec<String>, ConfigError> {
    let matches = Cli::command()
        .try_get_matches_from(cmdline)
        .map_err(|e| ConfigError::Combined(e.to_string()))?;
    let Some(("run", m)) = matches.subcommand() else {
        return Err(ConfigError::Combined("not a `keepalive run` command line".into()));
    };
    Ok(run_command()
        .get_arguments()
        .filter(|a| {
            m.value_source(a.get_id().as_str()) == Some(clap::parser::ValueSource::CommandLine)
        })
        .filter_map(|a| a.get_long().map(String::from))
        .collect())
}

/// `run`'s options from the process's own command line: the flags, and the file `--config`
/// names filling in the rest.
pub fn run_args(cmdline: &[OsString]) -> Result<RunArgs, ConfigError> {
    let args = parse_run(cmdline)?;
    match &args.config {
        Some(path) => ConfigFile::load(path)?.merge(cmdline),
        None if args.ifaces.is_empty() => Err(ConfigError::Combined(
            "no interface to attach to: give --iface IF (or --config FILE)".into(),
        )),
        None => Ok(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn file(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(Path::new("/etc/keepalive/keepalive.toml"), text)
            .map_err(|e| e.to_string())
    }

    /// The options a file gives, with nothing on the command line but `--config`.
    fn from_file(text: &str) -> RunArgs {
        let f = file(text).unwrap();
        f.merge(&argv(&["keepalive", "run", "--config", "/etc/keepalive/keepalive.toml"])).unwrap()
    }

    /// The options the same settings give as flags.
    fn from_flags(flags: &[&str]) -> RunArgs {
        let mut all = vec!["keepalive", "run", "--config", "/etc/keepalive/keepalive.toml"];
        all.extend_from_slice(flags);
        parse_run(&argv(&all)).unwrap()
    }

    #[test]
    fn every_option_round_trips_to_the_run_args_its_flag_gives() {
        let cases: &[(&str, &[&str])] = &[
            ("iface = [\"a\", \"b\"]", &["--iface", "a", "--iface", "b"]),
            ("iface = \"a\"", &["--iface", "a"]),
            ("mode = \"skb\"", &["--mode", "skb"]),
            ("hook = \"tc\"", &["--hook", "tc"]),
            ("mirror = true", &["--mirror"]),
            ("mirror = false", &[]),
            (
                "port = [\"sccp:2000\", \"sip:5080\"]",
                &["--port", "sccp:2000", "--port", "sip:5080"],
            ),
            ("vxlan-port = 8472", &["--vxlan-port", "8472"]),
            ("json = true", &["--json"]),
            ("events = true", &["--events"]),
            ("metrics = \"0.0.0.0:9108\"", &["--metrics", "0.0.0.0:9108"]),
            (
                "metrics = 9108\nmetrics-per-phone = true",
                &["--metrics", "9108", "--metrics-per-phone"],
            ),
            ("metrics-max-findings = 500", &["--metrics-max-findings", "500"]),
            ("syslog = \"udp://127.0.0.1:514\"", &["--syslog", "udp://127.0.0.1:514"]),
            ("cucm-syslog = \"udp://0.0.0.0:5514\"", &["--cucm-syslog", "udp://0.0.0.0:5514"]),
            (
                "metrics-web-config = \"/etc/k/web.yml\"",
                &["--metrics-web-config", "/etc/k/web.yml"],
            ),
            ("socket = \"/run/k/s.sock\"", &["--socket", "/run/k/s.sock"]),
            ("socket-mode = \"0600\"", &["--socket-mode", "0600"]),
            ("expire = \"2h\"", &["--expire", "2h"]),
            ("refresh = \"500ms\"", &["--refresh", "500ms"]),
            ("max-phones = 5000", &["--max-phones", "5000"]),
            ("grace = 20", &["--grace", "20"]),
            ("grace = 20.5", &["--grace", "20.5"]),
            ("delta = 3", &["--delta", "3"]),
            ("time-scale = 10\nreplay = true", &["--time-scale", "10", "--replay"]),
            ("count = 100", &["--count", "100"]),
            ("duration = \"30s\"", &["--duration", "30s"]),
        ];
        // Every key of `run` is covered here.
        let covered: Vec<String> = cases
            .iter()
            .flat_map(|(t, _)| t.lines().map(|l| l.split(' ').next().unwrap().to_string()))
            .collect();
        for (key, _) in keys() {
            assert!(covered.contains(&key), "no round-trip case for `{key}`");
        }
        for (text, flags) in cases {
            let with_iface = |t: &str| {
                if t.starts_with("iface") {
                    t.to_string()
                } else {
                    format!("{t}\niface = [\"x\"]")
                }
            };
            let mut flags = flags.to_vec();
            if !text.starts_with("iface") {
                flags.extend(["--iface", "x"]);
            }
            assert_eq!(
                format!("{:?}", from_file(&with_iface(text))),
                format!("{:?}", from_flags(&flags)),
                "{text}"
            );
        }
    }

    #[test]
    fn flags_win_over_the_file_and_lists_replace() {
        let f = file("iface = [\"a\", \"b\"]\ngrace = 20\ndelta = 3\n").unwrap();
        let a = f
            .merge(&argv(&["keepalive", "run", "--config", "f", "--grace", "30", "--iface", "c"]))
            .unwrap();
        assert_eq!((a.ifaces, a.timers.grace, a.timers.delta), (vec!["c".to_string()], 30.0, 3.0));
    }

    #[test]
    fn each_kind_of_bad_file_names_the_line_and_the_key() {
        let at = "/etc/keepalive/keepalive.toml";
        for (text, says) in [
            (
                "iface = [\"a\"]\ngrase = 3\n",
                format!("{at}:2: unknown key `grase` (the keys are: iface,"),
            ),
            (
                "iface = [\"a\"]\n\ngrace = \"abc\"\n",
                format!("{at}:3: `grace`: invalid value 'abc'"),
            ),
            ("grace = -1\n", format!("{at}:1: `grace`:")),
            ("mirror = \"yes\"\n", format!("{at}:1: `mirror` must be true or false")),
            (
                "iface = [1.5, {{}}]\n".replace("{{}}", "{}").leak(),
                format!("{at}:1: `iface` must be a list of strings"),
            ),
            ("expire = [\"1h\"]\n", format!("{at}:1: `expire` must be a string or a number")),
            ("grace = true\n", format!("{at}:1: `grace` must be a string or a number")),
            ("expire = \"9999999999999999h\"\n", format!("{at}:1: `expire`:")),
            ("port = [\"h323:1720\"]\n", format!("{at}:1: `port`:")),
            ("max-phones = 0\n", format!("{at}:1: `max-phones`:")),
            ("iface = [\"a\"]\nmirror = \n", format!("{at}:2: ")),
            ("iface = [\"a\"]\niface = [\"b\"]\n", format!("{at}:2: ")),
            ("[run]\niface = [\"a\"]\n", format!("{at}:1: unknown key `run`")),
            ("config = \"/etc/other.toml\"\n", format!("{at}:1: unknown key `config`")),
        ] {
            let err = file(text).expect_err(text);
            assert!(err.starts_with(&says), "{text:?}: {err}");
        }
        // What keys need of each other is judged on the merge, naming the file.
        let f = file("iface = [\"a\"]\nmetrics-per-phone = true\n").unwrap();
        let err = f.merge(&argv(&["keepalive", "run", "--config", at])).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{at} with the command line: ")), "{err}");
        assert!(err.contains("--metrics <ADDR>"), "{err}");
        // A file without interfaces is refused once merged, naming the way out.
        let f = file("grace = 3\n").unwrap();
        let err = f.merge(&argv(&["keepalive", "run", "--config", at])).unwrap_err().to_string();
        assert!(err.contains("give --iface or `iface = [\"eth1\"]` in"), "{err}");
        let err = ConfigFile::load(Path::new("/nonexistent/keepalive.toml")).unwrap_err();
        assert!(err.to_string().starts_with("cannot read /nonexistent/keepalive.toml: "), "{err}");
    }

    #[test]
    fn the_shipped_file_is_valid_and_sets_nothing_but_the_defaults() {
        let shipped = include_str!("../../packaging/keepalive.toml");
        let f = file(shipped).unwrap();
        assert!(f.keys().is_empty(), "the shipped file sets nothing: {:?}", f.keys());
        // Every key is documented in it, commented out with its default.
        for (key, _) in keys() {
            assert!(
                shipped.lines().any(|l| l.starts_with(&format!("# {key} = "))
                    || l.starts_with(&format!("{key} = "))),
                "`{key}` is not in packaging/keepalive.toml"
            );
        }
        // Uncommenting every line gives the defaults the flags give.
        let uncommented: String = shipped
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
            .filter(|l| !l.ends_with("# example"))
            .filter(|l| keys().iter().any(|(k, _)| l.starts_with(&format!("{k} = "))))
            .collect::<Vec<_>>()
            .join("\n");
        let all = format!("{uncommented}\niface = [\"eth1\"]\n");
        // An explicit port list equal to the defaults is the same XDP configuration.
        let effective = |mut a: RunArgs| {
            let cfg = a.config();
            a.ports.clear();
            format!("{a:?} {cfg:?}")
        };
        assert_eq!(
            effective(from_file(&all)),
            effective(from_flags(&["--iface", "eth1"])),
            "a commented default differs from the flag's default"
        );
    }
}
