//! The CPU engine benchmark: `cargo run --release --example cpu_bench [preset]`
//! (default `vit-b-32`). Single thread; see `webclip::bench::cpu`.

fn main() {
    let preset = std::env::args().nth(1).unwrap_or_else(|| "vit-b-32".into());
    if let Err(e) = webclip::bench::cpu::run_bench(&preset, 0, false, &mut std::io::stdout()) {
        eprintln!("cpu_bench: {e}");
        std::process::exit(1);
    }
}
