//! How fast the payload generator runs on one core, per wire format:
//! `cargo run --release -p loadgen --example genrate`.

use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use loadgen::payload::{Compression, Generator, PayloadConfig, Signal, Wire};

fn main() {
    for signal in [Signal::Traces, Signal::Logs] {
        for (wire, c) in [
            (Wire::Protobuf, Compression::None),
            (Wire::Protobuf, Compression::Gzip),
            (Wire::Json, Compression::None),
        ] {
            let cfg = PayloadConfig {
                signal,
                ..PayloadConfig::default()
            };
            let mut g = Generator::new(&cfg, wire, c, 1, 0);
            let t = Instant::now();
            let (mut items, mut bytes) = (0u64, 0u64);
            let mut now = 1_764_000_000_000_000_000u64;
            while t.elapsed() < Duration::from_secs(1) {
                let b = g.next_batch(now);
                now += 100_000;
                items += b.items;
                bytes += b.body.len() as u64;
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{signal:?} {wire:?} {c:?}: {:.0} items/s, {:.0} B/item",
                items as f64 / secs,
                bytes as f64 / items as f64
            );
        }
    }
}
