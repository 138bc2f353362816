//! The `keepalive` binary: parses arguments, then hands over to the library.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser as _;
use keepalive::{
    analyze,
    cli::{AnalyzeArgs, Cli, Command, Format, RunArgs},
    loader::{LoadOptions, Probe},
    record::EventJson,
    report,
    source::live::LiveSource,
};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(run(args))
        }
        Command::Analyze(args) => analyze(&args),
    }
}

fn analyze(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let opts = analyze::Options {
        config: args.config().map_err(anyhow::Error::msg)?,
        settings: keepalive::tracker::Settings {
            grace_s: args.grace,
            delta_s: args.delta,
            ..Default::default()
        },
        progress: true,
    };
    let report = analyze::file(&args.file, &opts)?;
    if let Some(t) = &report.summary.truncated {
        eprintln!("keepalive: warning: {t}");
    }
    let out = std::io::stdout().lock();
    let written = match args.format {
        Format::Json => report::json::write(&report, out),
        Format::Table => report::table::write(&report, out),
    };
    match written {
        // `keepalive analyze x | head` closes the pipe early: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.config().map_err(anyhow::Error::msg)?;
    let mut probe = Probe::load(&LoadOptions { config, ..LoadOptions::default() })?;
    for iface in &args.ifaces {
        let mode = probe.attach(iface, args.mode)?;
        eprintln!("keepalive: attached to {iface} in {mode:?} mode");
    }
    let mut source = LiveSource::new(probe.take_ring()?).context("polling the ring buffer")?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let deadline = async {
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let stdout = std::io::stdout();
    let mut batch = Vec::new();
    let mut total: u64 = 0;
    loop {
        tokio::select! {
            r = source.next_batch(&mut batch) => { r?; }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            () = &mut deadline => break,
        }
        let mut out = stdout.lock();
        for rec in batch.drain(..) {
            if args.events {
                serde_json::to_writer(&mut out, &EventJson::new(&rec.event))?;
                out.write_all(b"\n")?;
            }
            total += 1;
            if args.count.is_some_and(|n| total >= n) {
                out.flush()?;
                return finish(&probe, &source);
            }
        }
        out.flush()?;
    }
    finish(&probe, &source)
}

fn finish(probe: &Probe, source: &LiveSource) -> anyhow::Result<()> {
    let c = probe.counters()?;
    eprintln!(
        "keepalive: seen {} matched tcp {} arp {} events {} ring-buffer full {} parse errors {} bad records {}",
        c.seen, c.matched_tcp, c.matched_arp, c.events, c.ringbuf_full, c.parse_errors, source.bad_records
    );
    // Dropping the probe detaches the program from every interface.
    Ok(())
}
