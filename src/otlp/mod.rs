//! OTLP wire formats: request bodies in (protobuf, JSON) and OTLP JSON out.
//!
//! Decoders turn a request body into domain batches ([`crate::domain::SpanBatch`],
//! [`crate::domain::LogBatch`]) that borrow
//! from the body, applying [`crate::domain::validate`] to every item: invalid items are
//! dropped into [`Rejections`], the valid rest is kept. A body that cannot be parsed at all is a
//! [`DecodeError`] (HTTP 400 / gRPC `INVALID_ARGUMENT`).
//!
//! Architecture invariant: nothing here knows about HTTP, shards or storage.

pub mod json;
pub mod json_out;
pub mod proto;
pub mod proto_out;
pub mod rpc;

use std::borrow::Cow;
use std::cell::Cell;

use crate::domain::validate::{Rejections, Sanitised};
use crate::domain::{AnyValue, KeyValue, Resource, Scope};
use crate::limits::REQUEST_VALUES_BYTES_MAX;

/// Resource → its scopes → their items, in first-seen order: how an OTLP document nests items
/// that arrive as (resource, scope, items) groups, groups sharing a resource and scope merged.
pub type Nested<'g, K, I> = Vec<(&'g K, Vec<(&'g K, Vec<&'g I>)>)>;

/// Nests `groups` of (resource, scope, items) as [`Nested`].
pub fn nest<'g, K, I>(groups: impl IntoIterator<Item = (&'g K, &'g K, &'g [I])>) -> Nested<'g, K, I>
where
    K: PartialEq + ?Sized,
{
    let mut order: Nested<'g, K, I> = Vec::new();
    for (resource, scope, items) in groups {
        let r = match order.iter().position(|(r, _)| *r == resource) {
            Some(i) => i,
            None => {
                order.push((resource, Vec::new()));
                order.len() - 1
            }
        };
        let scopes = &mut order[r].1;
        let s = match scopes.iter().position(|(s, _)| *s == scope) {
            Some(i) => i,
            None => {
                scopes.push((scope, Vec::new()));
                scopes.len() - 1
            }
        };
        scopes[s].1.extend(items);
    }
    order
}

/// The outcome of decoding one export request.
#[derive(Debug, Default)]
pub struct Decoded<T> {
    /// One batch per (resource, scope) of the request, in request order, holding only the
    /// valid items. Batches left empty by validation are kept out.
    pub batches: Vec<T>,
    /// Items kept (sum of the batches' lengths).
    pub accepted: u64,
    /// Items dropped as invalid, with the first reason.
    pub rejected: Rejections,
    /// What sanitisation changed in the kept items.
    pub sanitised: Sanitised,
}

/// A body that is not a well-formed OTLP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Protobuf framing is broken: `what` went wrong at byte `offset` of the body.
    #[error("malformed protobuf at byte {offset}: {what}")]
    Protobuf { what: &'static str, offset: usize },
    /// A protobuf string field is not UTF-8.
    #[error("protobuf string at byte {offset} is not valid UTF-8")]
    Utf8 { offset: usize },
    /// The decoded request would take more memory than
    /// [`crate::limits::REQUEST_VALUES_BYTES_MAX`].
    #[error("request decodes to more than {max} bytes of values; send smaller batches")]
    TooLarge { max: usize },
    /// Protobuf nesting deeper than [`crate::limits::PROTO_DEPTH_MAX`].
    #[error("protobuf nesting deeper than {max} levels", max = crate::limits::PROTO_DEPTH_MAX)]
    TooDeep,
    /// The JSON body is not valid OTLP JSON; the message comes from the JSON parser with its
    /// line and column.
    #[error("invalid OTLP JSON: {0}")]
    Json(String),
}

/// The memory one request's decoded values may take, [`REQUEST_VALUES_BYTES_MAX`], shared by
/// the protobuf and JSON decoders.
///
/// Decoding expands: a two-byte attribute on the wire is a 56-byte `KeyValue`, an empty span a
/// few hundred bytes, and a 3-byte JSON `{}` a mirror struct and then a domain value. Without a
/// budget a 64 MiB body could decode into gigabytes. Every element pushed into a list is
/// charged its size; past the budget the request is refused (413).
/// A thread-local because a shard decodes one request at a time, start to end, on its thread.
pub(crate) struct Budget;

thread_local! {
    static BUDGET_LEFT: Cell<usize> = const { Cell::new(0) };
    /// Whether a charge failed since the last reset: tells a refused charge, which the JSON
    /// decoder can only report through serde as a custom error, from a malformed body.
    static BUDGET_EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

impl Budget {
    /// Starts a request: the whole budget is left.
    pub(crate) fn reset() {
        BUDGET_LEFT.with(|b| b.set(REQUEST_VALUES_BYTES_MAX));
        BUDGET_EXCEEDED.with(|e| e.set(false));
    }

    /// Takes `bytes` from the budget, or fails with [`DecodeError::TooLarge`] (and takes
    /// nothing) if fewer are left.
    #[inline]
    pub(crate) fn charge(bytes: usize) -> Result<(), DecodeError> {
        BUDGET_LEFT.with(|b| {
            let left = b.get();
            if left < bytes {
                return Err(Self::exceed());
            }
            b.set(left - bytes);
            Ok(())
        })
    }

    #[cold]
    fn exceed() -> DecodeError {
        BUDGET_EXCEEDED.with(|e| e.set(true));
        DecodeError::TooLarge {
            max: REQUEST_VALUES_BYTES_MAX,
        }
    }

    /// Bytes left.
    #[inline]
    pub(crate) fn left() -> usize {
        BUDGET_LEFT.with(Cell::get)
    }

    /// Whether a charge was refused since the last [`Budget::reset`].
    pub(crate) fn exceeded() -> bool {
        BUDGET_EXCEEDED.with(Cell::get)
    }
}

/// Pushes one batch per scope, each with the (validated) resource: the last one takes it, the
/// others a copy charged against the [`Budget`]. Both decoders end a resource's message here.
pub(crate) fn batch_per_scope<'a, T, B>(
    out: &mut Decoded<B>,
    mut resource: Resource<'a>,
    scopes: Vec<(Scope<'a>, Vec<T>)>,
    batch: impl Fn(Resource<'a>, Scope<'a>, Vec<T>) -> B,
) -> Result<(), DecodeError> {
    let copy_bytes = match scopes.len() {
        1 => 0,
        _ => resource_copy_bytes(&resource),
    };
    let mut scopes = scopes.into_iter().peekable();
    while let Some((scope, items)) = scopes.next() {
        let resource = match scopes.peek() {
            Some(_) => {
                Budget::charge(copy_bytes)?;
                resource.clone()
            }
            None => std::mem::take(&mut resource),
        };
        out.batches.push(batch(resource, scope, items));
    }
    Ok(())
}

/// What [`Clone`] allocates for `resource`: its lists, and the strings and bytes it owns.
///
/// Decoders give each scope batch its own copy of the resource; they charge each copy this
/// much, or a big resource followed by a million small scopes would be copied a million times.
/// Recursive: call it on validated resources only, whose values nest at most
/// [`crate::limits::VALUE_DEPTH_MAX`] deep.
fn resource_copy_bytes(resource: &Resource<'_>) -> usize {
    fn kvs(kvs: &[KeyValue<'_>]) -> usize {
        kvs.iter()
            .map(|kv| std::mem::size_of::<KeyValue<'_>>() + owned(&kv.key) + value(&kv.value))
            .sum()
    }
    fn value(v: &AnyValue<'_>) -> usize {
        match v {
            AnyValue::String(s) => owned(s),
            AnyValue::Bytes(b) => owned(b),
            AnyValue::Array(a) => a
                .iter()
                .map(|v| std::mem::size_of::<AnyValue<'_>>() + value(v))
                .sum(),
            AnyValue::KvList(l) => kvs(l),
            AnyValue::Empty | AnyValue::Bool(_) | AnyValue::Int(_) | AnyValue::Double(_) => 0,
        }
    }
    // Takes the `Cow` itself: whether it owns its data is the point.
    #[allow(clippy::ptr_arg)]
    fn owned<B: ToOwned + AsRef<[u8]> + ?Sized>(c: &Cow<'_, B>) -> usize {
        match c {
            Cow::Borrowed(_) => 0,
            Cow::Owned(_) => (**c).as_ref().len(),
        }
    }
    kvs(&resource.attributes) + owned(&resource.schema_url)
}
