//! Writes a healthy-site capture of PHONES phones over MINUTES minutes (half the frames
//! unrelated traffic): `cargo run --release --example site_capture -- PHONES MINUTES OUT.pcap`.

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(phones), Some(minutes), Some(out)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: site_capture PHONES MINUTES OUT.pcap");
        std::process::exit(2);
    };
    let (phones, minutes): (u32, u32) = match (phones.parse(), minutes.parse()) {
        (Ok(p), Ok(m)) => (p, m),
        _ => {
            eprintln!("PHONES and MINUTES must be whole numbers");
            std::process::exit(2);
        }
    };
    let mut tl = keepalive_lab::fixtures::scenario::site(phones, minutes);
    std::fs::write(out, tl.to_pcap())?;
    println!("{out}: {} frames", tl.len());
    Ok(())
}
