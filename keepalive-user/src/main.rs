use keepalive::loader::{LoadOptions, Probe, PROGRAM};
fn main() -> anyhow::Result<()> {
    let mut p = Probe::load(&LoadOptions::default())?;
    let f = keepalive::fixtures::tcp_frame(
        &keepalive::fixtures::Eth::new([2; 6], [4; 6]),
        &keepalive::fixtures::Net::between("10.0.0.1".parse()?, "10.0.0.2".parse()?),
        &keepalive::fixtures::Tcp::data(50000, 2000, 1, 1),
        &keepalive::fixtures::sccp_keepalive(),
    );
    println!("{:?}", p.test_run(PROGRAM, &f, 1)?);
    println!("{:?}", p.counters()?);
    Ok(())
}
