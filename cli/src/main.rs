//! `haven`: a device on the command line (see issue 3).

fn main() {
    eprintln!("haven: the device CLI is not built yet; see issue 3");
    std::process::exit(2);
}
