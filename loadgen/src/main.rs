use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;

// The generator allocates many small strings per span: mimalloc makes it ~1.5x faster than
// glibc's allocator (see `examples/genrate.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = loadgen::cli::Args::parse();
    // SIGINT / SIGTERM: stop sending, let requests in flight finish, report as usual.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let code = loadgen::app::main_with(
        args,
        stop,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    std::process::exit(code);
}
