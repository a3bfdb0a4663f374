//! The CPU engine benchmark: `cargo run --release --example cpu_bench [preset]`
//! (default `vit-b-32`). Single thread; see `webclip::cpu::bench`.

fn main() {
    let preset = std::env::args().nth(1).unwrap_or_else(|| "vit-b-32".into());
    if let Err(e) = webclip::cpu::bench::run_bench(&preset, &mut std::io::stdout()) {
        eprintln!("cpu_bench: {e}");
        std::process::exit(1);
    }
}
