//! The `keepalive` binary: parses arguments, then hands over to the library.

use std::io::{IsTerminal as _, Write};

use clap::Parser as _;
use keepalive::{
    agent::{self, Output},
    analyze,
    cli::{AnalyzeArgs, Cli, Command, Format, RunArgs, StatsArgs},
    report,
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let opts = run_options(&args)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            Ok(rt.block_on(agent::run(opts))?)
        }
        Command::Analyze(args) => analyze(&args),
        Command::Stats(args) => stats(&args),
    }
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
        config: args.config().map_err(anyhow::Error::msg)?,
        settings: args.timers.settings(),
        socket: args.socket.clone(),
        socket_mode: args.socket_mode,
        metrics: args.metrics,
        metrics_per_phone: args.metrics_per_phone,
        output,
        refresh: args.refresh,
        expire: args.expire,
        limits: keepalive::tracker::Limits::for_phones(args.max_phones),
        count: args.count,
        duration: args.duration,
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
    let report = analyze::file(&args.file, &opts)?;
    if let Some(t) = &report.summary.truncated {
        eprintln!("keepalive: warning: {t}");
    }
    print_or_pipe_closed(|out| match args.format {
        Format::Json => report::json::write(&report, out),
        Format::Table => report::table::write(&report, out),
    })
}

/// Writes to stdout; a reader that closed the pipe early (`| head`) is not an error.
fn print_or_pipe_closed(
    f: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match f(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
