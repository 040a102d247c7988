//! Sealing: full segments rewritten as compressed blocks laid out for queries, with an index
//! sidecar (`docs/design/sealed-segments.md`). For now the block codec of spans ([`block`])
//! and its byte-level pieces ([`column`]); sealing segments with it is not built yet.
//!
//! Above `storage` and `index`, below `shard`: it knows the domain's spans, not OTLP's wire
//! formats.

pub mod block;
pub mod column;

#[cfg(test)]
mod tests;
