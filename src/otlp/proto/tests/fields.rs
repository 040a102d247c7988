//! The decoder against `proto/`: for every field that `proto/` declares on the way from an
//! export request down, the decoder knows that field number and expects that wire type; every
//! number `proto/` reserves, the decoder skips.
//!
//! The check is behavioural, so it needs no table to keep in step: each field is sent alone, at
//! its place in a request, with a wrong wire type, and the decoder must refuse it naming that
//! very field ("wrong wire type for Span.flags"), which it can only do if its constant for
//! `Span.flags` is the number `proto/` gives. The right wire types are what the differential
//! property tests (`props.rs`) decode.

use std::collections::{HashMap, VecDeque};

use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, FileDescriptorSet};

use super::*;
use crate::otlp::rpc::DESCRIPTORS;

/// A message of `proto/` and the package of its file.
struct ProtoMessage {
    package: String,
    descriptor: DescriptorProto,
}

/// Every message of `proto/` by its full name (without the leading dot).
fn messages() -> HashMap<String, ProtoMessage> {
    fn add(
        package: &str,
        prefix: &str,
        m: &DescriptorProto,
        out: &mut HashMap<String, ProtoMessage>,
    ) {
        let name = format!("{prefix}.{}", m.name());
        for nested in &m.nested_type {
            add(package, &name, nested, out);
        }
        let message = ProtoMessage {
            package: package.to_string(),
            descriptor: m.clone(),
        };
        out.insert(name, message);
    }
    let fds = FileDescriptorSet::decode(DESCRIPTORS).expect("build.rs wrote a descriptor set");
    let mut out = HashMap::new();
    for file in &fds.file {
        for m in &file.message_type {
            add(file.package(), file.package(), m, &mut out);
        }
    }
    out
}

/// The wire type protobuf gives a (non-packed) field of type `ty`.
fn wire_type(ty: Type) -> u8 {
    match ty {
        Type::Double | Type::Fixed64 | Type::Sfixed64 => I64,
        Type::Float | Type::Fixed32 | Type::Sfixed32 => I32,
        Type::String | Type::Bytes | Type::Message => LEN,
        Type::Group => SGROUP,
        _ => VARINT,
    }
}

/// A field of wire type `wire` with the smallest payload.
fn field_of_wire(number: u32, wire: u8) -> Vec<u8> {
    match wire {
        VARINT => vi(number, 0),
        I64 => fx64(number, 0),
        I32 => fx32(number, 0),
        LEN => ld(number, &[]),
        _ => unreachable!("only the four wire types Glust accepts"),
    }
}

/// The message's name as the decoder's errors spell it: without its package.
fn short_name(full: &str, package: &str) -> String {
    full.strip_prefix(package)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(full)
        .to_string()
}

/// Each message reachable from `root` with the way down to it (the field numbers of the
/// embedded messages that hold it), the first way found breadth first.
fn ways_down(root: &str, messages: &HashMap<String, ProtoMessage>) -> Vec<(String, Vec<u32>)> {
    let mut seen = vec![(root.to_string(), Vec::new())];
    let mut queue = VecDeque::from([(root.to_string(), Vec::new())]);
    while let Some((name, way)) = queue.pop_front() {
        for field in &messages[&name].descriptor.field {
            if field.r#type() != Type::Message {
                continue;
            }
            let child = field.type_name().trim_start_matches('.').to_string();
            if seen.iter().any(|(n, _)| *n == child) {
                continue;
            }
            let mut child_way = way.clone();
            child_way.push(field.number() as u32);
            seen.push((child.clone(), child_way.clone()));
            queue.push_back((child, child_way));
        }
    }
    seen
}

/// `inner` as the content of the message at the end of `way`, wrapped up to the request.
fn wrap(way: &[u32], inner: Vec<u8>) -> Vec<u8> {
    way.iter()
        .rev()
        .fold(inner, |bytes, &number| ld(number, &bytes))
}

/// Checks every field and reserved number reachable from `root`; returns how many fields.
fn check_signal(root: &str, decode: fn(&[u8]) -> Result<usize>) -> usize {
    let messages = messages();
    let mut checked = 0;
    for (name, way) in ways_down(root, &messages) {
        let ProtoMessage {
            package,
            descriptor: message,
        } = &messages[&name];
        let short = short_name(&name, package);
        for field in &message.field {
            let right = wire_type(field.r#type());
            let wrong = if right == LEN { VARINT } else { LEN };
            let body = wrap(&way, field_of_wire(field.number() as u32, wrong));
            let expected = format!("wrong wire type for {short}.{}", field.name());
            match decode(&body) {
                Err(DecodeError::Protobuf { what, .. }) => assert_eq!(
                    what,
                    expected,
                    "field {} of {name} sent as wire type {wrong}",
                    field.number()
                ),
                other => panic!(
                    "field {} of {name} sent as wire type {wrong}: expected {expected:?}, got \
                     {other:?}",
                    field.number()
                ),
            }
            checked += 1;
        }
        for reserved in &message.reserved_range {
            // Reserved ranges are [start, end); any wire type of an unknown field is skipped.
            for number in reserved.start()..reserved.end() {
                for wire in [VARINT, I64, LEN, I32] {
                    let body = wrap(&way, field_of_wire(number as u32, wire));
                    assert!(
                        decode(&body).is_ok(),
                        "reserved field {number} of {name}, wire type {wire}, is not skipped"
                    );
                }
            }
        }
    }
    checked
}

#[test]
fn the_trace_decoder_reads_every_field_of_proto_with_its_number_and_wire_type() {
    let checked = check_signal(
        "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
        |body| decode_traces(body).map(|d| d.batches.len()),
    );
    // Request, ResourceSpans, Resource, ScopeSpans, scope, Span, Event, Link, Status, KeyValue,
    // AnyValue, ArrayValue, KeyValueList: if `proto/` loses a message, this says so.
    assert_eq!(checked, 1 + 3 + 2 + 3 + 4 + 16 + 4 + 6 + 2 + 2 + 8 + 1 + 1);
}

#[test]
fn the_log_decoder_reads_every_field_of_proto_with_its_number_and_wire_type() {
    let checked = check_signal(
        "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
        |body| decode_logs(body).map(|d| d.batches.len()),
    );
    // Request, ResourceLogs, Resource, ScopeLogs, scope, LogRecord, KeyValue, AnyValue,
    // ArrayValue, KeyValueList.
    assert_eq!(checked, 1 + 3 + 2 + 3 + 4 + 11 + 2 + 8 + 1 + 1);
}
