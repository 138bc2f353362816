//! The `keepalive` binary: parses arguments, then hands over to the library.

use std::{
    ffi::OsString,
    io::{IsTerminal as _, Write},
};

use clap::Parser as _;
use keepalive::{
    agent::{self, Output},
    analyze,
    cli::{AnalyzeArgs, CheckConfigArgs, Cli, Command, Format, RunArgs, StatsArgs},
    config, report,
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(_) => {
            // The file (if any) fills in what the flags do not give; SIGHUP reads it again.
            let cmdline: Vec<OsString> = std::env::args_os().collect();
            let args = config::run_args(&cmdline)?;
            let mut opts = run_options(&args)?;
            if args.config.is_some() {
                opts.reload = Some(agent::Reload::new(move || {
                    let args = config::run_args(&cmdline).map_err(|e| e.to_string())?;
                    run_options(&args).map_err(|e| e.to_string())
                }));
            }
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            Ok(rt.block_on(agent::run(opts))?)
        }
        Command::Analyze(args) => analyze(&args),
        Command::Stats(args) => stats(&args),
        Command::CheckConfig(args) => check_config(&args),
    }
}

/// Validates a configuration file the way `run --config` reads it, attaching nothing.
fn check_config(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let file = config::ConfigFile::load(&args.file)?;
    let cmdline: Vec<OsString> = ["keepalive", "run", "--config"]
        .map(OsString::from)
        .into_iter()
        .chain([args.file.clone().into()])
        .collect();
    let run = file.merge(&cmdline)?;
    run_options(&run)?;
    println!(
        "{}: ok ({} keys set; interfaces {}; the other options are defaults)",
        args.file.display(),
        file.keys().len(),
        run.ifaces.join(", ")
    );
    Ok(())
}

fn run_options(args: &RunArgs) -> anyhow::Result<agent::Options> {
    let output = if args.events {
        Output::Events
    } else if args.json || !std::io::stdout().is_terminal() {
        Output::Findings
    } else {
        Output::View
    };
    Ok(agent::Options {
        ifaces: args.ifaces.clone(),
        mode: args.mode,
        hook: args.hook,
        config: args.config().map_err(anyhow::Error::msg)?,
        settings: args.timers.settings(),
        socket: args.socket.clone(),
        socket_mode: args.socket_mode,
        metrics: args.metrics,
        metrics_per_phone: args.metrics_per_phone,
        metrics_max_findings: args.metrics_max_findings as usize,
        metrics_web_config: args.metrics_web_config.clone(),
        output,
        refresh: args.refresh,
        expire: args.expire,
        limits: keepalive::tracker::Limits::for_phones(args.max_phones),
        count: args.count,
        duration: args.duration,
        syslog: args.syslog.clone(),
        cucm_syslog: args.cucm_syslog,
        reload: None,
    })
}

fn stats(args: &StatsArgs) -> anyhow::Result<()> {
    let query = agent::socket::Query {
        table: args.format == Format::Table,
        findings_only: args.findings,
        phone: args.phone.clone(),
        limit: args.limit,
        offset: args.offset,
    };
    let body = agent::socket::fetch(&args.socket, &query)?;
    print_or_pipe_closed(|out| out.write_all(body.as_bytes()))
}

fn analyze(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let opts = analyze::Options {
        config: args.config().map_err(anyhow::Error::msg)?,
        settings: args.timers.settings(),
        progress: true,
    };
    let alarms = args.cucm_syslog.as_deref().map(read_cucm_syslog).transpose()?;
    let cap = keepalive::source::capture::Capture::open(&args.file)?;
    let report = analyze::capture_scored(cap, &opts, alarms)?;
    if let Some(t) = &report.summary.truncated {
        eprintln!("keepalive: warning: {t}");
    }
    print_or_pipe_closed(|out| match args.format {
        Format::Json => report::json::write(&report, out),
        Format::Table => report::table::write(&report, out),
    })
}

/// Reads a saved CUCM syslog for `analyze`. A stamp without a year is placed nearest the
/// file's modification time (a log is written as it goes); lines that are endpoint alarms but
/// cannot be read are reported (the first few) and counted, never fatal.
fn read_cucm_syslog(path: &std::path::Path) -> anyhow::Result<analyze::Alarms> {
    use anyhow::Context as _;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let reference_ns = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    let (alarms, bad) = analyze::Alarms::read(&String::from_utf8_lossy(&bytes), reference_ns);
    for b in bad.iter().take(5) {
        eprintln!("keepalive: warning: {}:{}: {}", path.display(), b.line, b.error);
    }
    if bad.len() > 5 {
        eprintln!(
            "keepalive: warning: {} more malformed alarm lines in {}",
            bad.len() - 5,
            path.display()
        );
    }
    if alarms.is_empty() {
        eprintln!("keepalive: warning: {}: no EndPointUnregistered alarm in it", path.display());
    }
    Ok(alarms)
}

/// Writes to stdout; a reader that closed the pipe early (`| head`) is not an error.
///
/// Buffered: stdout is line-buffered, and a pretty-printed report of 5 000 phones is 230 000
/// lines, each its own write(2) without the buffer.
fn print_or_pipe_closed(
    f: impl FnOnce(&mut std::io::BufWriter<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
