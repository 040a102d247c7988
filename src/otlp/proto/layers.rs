//! The layers traces and logs share: the `Signal` trait that tells them apart, and the
//! `Resource*` / `Scope*` messages with the `Resource` and `InstrumentationScope` they hold.

use super::fields::*;
use super::reader::Reader;
use super::values::attribute;
use super::{Item, Result};
use crate::domain::validate::{self, Sanitised};
use crate::domain::{Resource, Scope};
use crate::otlp::{batch_per_scope, Budget, Decoded};

/// What tells spans from logs in the layers they share.
pub(super) trait Signal {
    type Item<'a>;
    type Batch<'a>;
    /// Wrong-wire-type messages of the shared fields.
    const NAMES: Names;
    /// An item with every field at its default, to decode into in place.
    fn empty<'a>() -> Self::Item<'a>;
    /// Decodes one item into `slot`, an `empty()` one.
    fn item<'a>(r: Reader<'a>, slot: &mut Self::Item<'a>) -> Result<Item<()>>;
    /// Validates and sanitises a decoded item.
    fn check(item: &mut Self::Item<'_>, stats: &mut Sanitised) -> Item<()>;
    fn batch<'a>(
        resource: Resource<'a>,
        scope: Scope<'a>,
        items: Vec<Self::Item<'a>>,
    ) -> Self::Batch<'a>;
}

pub(super) struct Names {
    pub(super) resource_items: &'static str,
    pub(super) resource: &'static str,
    pub(super) scope_items: &'static str,
    pub(super) resource_schema_url: &'static str,
    pub(super) scope: &'static str,
    pub(super) items: &'static str,
    pub(super) scope_schema_url: &'static str,
}

/// `ResourceSpans` / `ResourceLogs`: pushes one batch per scope that kept items. The resource
/// may come after the scopes on the wire, so it is attached once the message is read. Each
/// batch has its own copy of the resource, charged against the [`Budget`].
pub(super) fn resource_items<'a, S: Signal>(
    mut r: Reader<'a>,
    out: &mut Decoded<S::Batch<'a>>,
) -> Result<()> {
    let mut resource = Resource::default();
    let mut scopes = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match field {
            RESOURCE_ITEMS_RESOURCE => {
                let sub = r.message(wire, S::NAMES.resource)?;
                self::resource(sub, &mut resource)?;
            }
            RESOURCE_ITEMS_SCOPE_ITEMS => {
                let sub = r.message(wire, S::NAMES.scope_items)?;
                if let Some(scope) = scope_items::<S>(sub, out)? {
                    Budget::charge(std::mem::size_of_val(&scope))?;
                    scopes.push(scope);
                }
            }
            RESOURCE_ITEMS_SCHEMA_URL => {
                resource.schema_url = r.str(wire, S::NAMES.resource_schema_url)?;
            }
            _ => r.skip(wire)?,
        }
    }
    if scopes.is_empty() {
        return Ok(());
    }
    validate::resource(&mut resource, &mut out.sanitised);
    batch_per_scope(out, resource, scopes, S::batch)
}

/// `ScopeSpans` / `ScopeLogs`: the scope and its valid items, `None` if none is valid.
#[allow(clippy::type_complexity)]
fn scope_items<'a, S: Signal>(
    mut r: Reader<'a>,
    out: &mut Decoded<S::Batch<'a>>,
) -> Result<Option<(Scope<'a>, Vec<S::Item<'a>>)>> {
    let mut scope = Scope::default();
    let mut items = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match field {
            SCOPE_ITEMS_SCOPE => {
                let sub = r.message(wire, S::NAMES.scope)?;
                self::scope(sub, &mut scope)?;
            }
            SCOPE_ITEMS_ITEMS => {
                let sub = r.message(wire, S::NAMES.items)?;
                r.grow(&mut items)?;
                // Decoded in place: items are big, moving them around costs.
                items.push(S::empty());
                let slot = items.last_mut().expect("just pushed");
                let checked = S::item(sub, slot)?.and_then(|()| S::check(slot, &mut out.sanitised));
                if let Err(why) = checked {
                    items.pop();
                    out.rejected.reject(&why);
                }
            }
            SCOPE_ITEMS_SCHEMA_URL => {
                scope.schema_url = r.str(wire, S::NAMES.scope_schema_url)?;
            }
            _ => r.skip(wire)?,
        }
    }
    if items.is_empty() {
        return Ok(None);
    }
    out.accepted += items.len() as u64;
    validate::scope(&mut scope, &mut out.sanitised);
    Ok(Some((scope, items)))
}

/// Merges a `Resource` message into `resource`.
fn resource<'a>(mut r: Reader<'a>, resource: &mut Resource<'a>) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            RESOURCE_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut resource.attributes,
                RESOURCE_DEPTH + 1,
                "wrong wire type for Resource.attributes",
            )?,
            RESOURCE_DROPPED_ATTRIBUTES_COUNT => {
                resource.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for Resource.dropped_attributes_count",
                )?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Merges an `InstrumentationScope` message into `scope`.
fn scope<'a>(mut r: Reader<'a>, scope: &mut Scope<'a>) -> Result<()> {
    while let Some((field, wire)) = r.key()? {
        match field {
            SCOPE_NAME => {
                scope.name = r.str(wire, "wrong wire type for InstrumentationScope.name")?;
            }
            SCOPE_VERSION => {
                scope.version = r.str(wire, "wrong wire type for InstrumentationScope.version")?;
            }
            SCOPE_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut scope.attributes,
                SCOPE_DEPTH + 1,
                "wrong wire type for InstrumentationScope.attributes",
            )?,
            SCOPE_DROPPED_ATTRIBUTES_COUNT => {
                scope.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for InstrumentationScope.dropped_attributes_count",
                )?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}
