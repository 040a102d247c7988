use std::fmt::Debug;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::logs::v1 as pl;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message;

use super::*;
use crate::domain::validate::Sanitised;

// ---- Hand encoding, for what prost cannot produce (repeated singular fields, bad bytes).

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn key(field: u32, wire: u8) -> Vec<u8> {
    varint(u64::from(field) << 3 | u64::from(wire))
}

/// A length-delimited field.
fn ld(field: u32, payload: &[u8]) -> Vec<u8> {
    [
        key(field, LEN),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}

fn vi(field: u32, v: u64) -> Vec<u8> {
    [key(field, VARINT), varint(v)].concat()
}

fn fx64(field: u32, v: u64) -> Vec<u8> {
    [key(field, I64), v.to_le_bytes().to_vec()].concat()
}

fn fx32(field: u32, v: u32) -> Vec<u8> {
    [key(field, I32), v.to_le_bytes().to_vec()].concat()
}

fn kv_str(k: &str, v: &str) -> Vec<u8> {
    [
        ld(KEY_VALUE_KEY, k.as_bytes()),
        ld(KEY_VALUE_VALUE, &ld(ANY_STRING, v.as_bytes())),
    ]
    .concat()
}

/// A valid span message with the given extra fields appended.
fn span_bytes(extra: &[u8]) -> Vec<u8> {
    [
        ld(SPAN_TRACE_ID, &[1; 16]),
        ld(SPAN_SPAN_ID, &[2; 8]),
        extra.to_vec(),
    ]
    .concat()
}

/// A request holding `spans` in one resource and one scope.
fn traces_body(spans: &[Vec<u8>]) -> Vec<u8> {
    let ss: Vec<u8> = spans
        .iter()
        .flat_map(|s| ld(SCOPE_ITEMS_ITEMS, s))
        .collect();
    ld(REQUEST_RESOURCE_ITEMS, &ld(RESOURCE_ITEMS_SCOPE_ITEMS, &ss))
}

fn logs_body(logs: &[Vec<u8>]) -> Vec<u8> {
    let sl: Vec<u8> = logs.iter().flat_map(|l| ld(SCOPE_ITEMS_ITEMS, l)).collect();
    ld(REQUEST_RESOURCE_ITEMS, &ld(RESOURCE_ITEMS_SCOPE_ITEMS, &sl))
}

fn only_span(body: &[u8]) -> Span<'_> {
    let mut d = decode_traces(body).expect("decodes");
    assert_eq!((d.batches.len(), d.accepted), (1, 1), "{:?}", d.rejected);
    d.batches.remove(0).spans.remove(0)
}

fn attr<'v>(attrs: &'v [KeyValue<'_>], k: &str) -> &'v AnyValue<'v> {
    &attrs
        .iter()
        .find(|kv| kv.key == k)
        .expect("attribute")
        .value
}

fn s(v: &str) -> AnyValue<'_> {
    AnyValue::String(Cow::Borrowed(v))
}

// ---- The oracle: prost's decoding, mapped to domain values through `validate`.

fn exp_value(v: &pc::AnyValue) -> AnyValue<'_> {
    use pc::any_value::Value as V;
    match &v.value {
        None | Some(V::StringValueStrindex(_)) => AnyValue::Empty,
        Some(V::StringValue(s)) => AnyValue::String(Cow::Borrowed(s)),
        Some(V::BoolValue(b)) => AnyValue::Bool(*b),
        Some(V::IntValue(i)) => AnyValue::Int(*i),
        Some(V::DoubleValue(d)) => AnyValue::Double(*d),
        Some(V::BytesValue(b)) => AnyValue::Bytes(Cow::Borrowed(b)),
        Some(V::ArrayValue(a)) => AnyValue::Array(a.values.iter().map(exp_value).collect()),
        Some(V::KvlistValue(l)) => AnyValue::KvList(exp_kvs(&l.values)),
    }
}

fn exp_kvs(kvs: &[pc::KeyValue]) -> Vec<KeyValue<'_>> {
    kvs.iter()
        .map(|kv| KeyValue {
            key: Cow::Borrowed(&kv.key),
            value: kv.value.as_ref().map_or(AnyValue::Empty, exp_value),
        })
        .collect()
}

fn exp_resource<'a>(r: Option<&'a pr::Resource>, schema_url: &'a str) -> Resource<'a> {
    Resource {
        attributes: r.map_or_else(Vec::new, |r| exp_kvs(&r.attributes)),
        dropped_attributes_count: r.map_or(0, |r| r.dropped_attributes_count),
        schema_url: Cow::Borrowed(schema_url),
    }
}

fn exp_scope<'a>(s: Option<&'a pc::InstrumentationScope>, schema_url: &'a str) -> Scope<'a> {
    let mut scope = s.map_or_else(Scope::default, |s| Scope {
        name: Cow::Borrowed(&s.name),
        version: Cow::Borrowed(&s.version),
        attributes: exp_kvs(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        schema_url: Cow::Borrowed(""),
    });
    scope.schema_url = Cow::Borrowed(schema_url);
    scope
}

fn exp_span(s: &pt::Span) -> Item<Span<'_>> {
    let trace_id = validate::trace_id(&s.trace_id)?;
    let span_id = validate::span_id(&s.span_id)?;
    let parent_span_id = validate::parent_span_id(&s.parent_span_id)?;
    let links = s
        .links
        .iter()
        .map(|l| {
            let (trace_id, span_id) = validate::link_ids(&l.trace_id, &l.span_id)?;
            Ok(Link {
                trace_id,
                span_id,
                trace_state: Cow::Borrowed(&l.trace_state),
                attributes: exp_kvs(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
        })
        .collect::<Item<Vec<_>>>()?;
    let status = s.status.as_ref().map_or_else(Status::default, |st| Status {
        message: Cow::Borrowed(&st.message),
        code: st.code,
    });
    Ok(Span {
        trace_id,
        span_id,
        trace_state: Cow::Borrowed(&s.trace_state),
        parent_span_id,
        flags: s.flags,
        name: Cow::Borrowed(&s.name),
        kind: s.kind,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: exp_kvs(&s.attributes),
        dropped_attributes_count: s.dropped_attributes_count,
        events: s
            .events
            .iter()
            .map(|e| Event {
                time_unix_nano: e.time_unix_nano,
                name: Cow::Borrowed(&e.name),
                attributes: exp_kvs(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped_events_count,
        links,
        dropped_links_count: s.dropped_links_count,
        status,
    })
}

fn exp_log(l: &pl::LogRecord) -> Item<LogRecord<'_>> {
    Ok(LogRecord {
        trace_id: validate::log_trace_id(&l.trace_id)?,
        span_id: validate::log_span_id(&l.span_id)?,
        time_unix_nano: l.time_unix_nano,
        observed_time_unix_nano: l.observed_time_unix_nano,
        severity_number: l.severity_number,
        severity_text: Cow::Borrowed(&l.severity_text),
        body: l.body.as_ref().map_or(AnyValue::Empty, exp_value),
        attributes: exp_kvs(&l.attributes),
        dropped_attributes_count: l.dropped_attributes_count,
        flags: l.flags,
        event_name: Cow::Borrowed(&l.event_name),
    })
}

/// The batching rules, applied to prost's view of one `Resource*` message.
fn exp_batches<'a, S: Signal, P: 'a>(
    resource: Resource<'a>,
    scopes: Vec<(Scope<'a>, &'a [P])>,
    item: impl Fn(&'a P) -> Item<S::Item<'a>>,
    out: &mut Decoded<S::Batch<'a>>,
) {
    let mut kept = Vec::new();
    for (mut scope, items) in scopes {
        let mut good = Vec::new();
        for p in items {
            match item(p).and_then(|mut i| S::check(&mut i, &mut out.sanitised).map(|()| i)) {
                Ok(i) => good.push(i),
                Err(why) => out.rejected.reject(&why),
            }
        }
        if !good.is_empty() {
            out.accepted += good.len() as u64;
            validate::scope(&mut scope, &mut out.sanitised);
            kept.push((scope, good));
        }
    }
    if kept.is_empty() {
        return;
    }
    let mut resource = resource;
    validate::resource(&mut resource, &mut out.sanitised);
    for (scope, items) in kept {
        out.batches.push(S::batch(resource.clone(), scope, items));
    }
}

fn expected_traces(req: &ExportTraceServiceRequest) -> Decoded<SpanBatch<'_>> {
    let mut out = Decoded::default();
    for rs in &req.resource_spans {
        let scopes = rs
            .scope_spans
            .iter()
            .map(|ss| (exp_scope(ss.scope.as_ref(), &ss.schema_url), &ss.spans[..]))
            .collect();
        let resource = exp_resource(rs.resource.as_ref(), &rs.schema_url);
        exp_batches::<Traces, _>(resource, scopes, exp_span, &mut out);
    }
    out
}

fn expected_logs(req: &ExportLogsServiceRequest) -> Decoded<LogBatch<'_>> {
    let mut out = Decoded::default();
    for rl in &req.resource_logs {
        let scopes = rl
            .scope_logs
            .iter()
            .map(|sl| {
                (
                    exp_scope(sl.scope.as_ref(), &sl.schema_url),
                    &sl.log_records[..],
                )
            })
            .collect();
        let resource = exp_resource(rl.resource.as_ref(), &rl.schema_url);
        exp_batches::<Logs, _>(resource, scopes, exp_log, &mut out);
    }
    out
}

/// Compares through `Debug`, so that NaN doubles compare equal to themselves.
fn same<T: Debug>(got: &Decoded<T>, want: &Decoded<T>) -> std::result::Result<(), String> {
    let got = format!(
        "{:?}",
        (&got.batches, got.accepted, &got.rejected, got.sanitised)
    );
    let want = format!(
        "{:?}",
        (&want.batches, want.accepted, &want.rejected, want.sanitised)
    );
    if got == want {
        Ok(())
    } else {
        Err(format!("decoded:\n{got}\nexpected:\n{want}"))
    }
}

/// Where prost decodes `body` too, our decoding must agree with it.
fn agrees_with_prost(body: &[u8]) -> std::result::Result<(), String> {
    if let (Ok(got), Ok(req)) = (decode_traces(body), ExportTraceServiceRequest::decode(body)) {
        same(&got, &expected_traces(&req))?;
    }
    if let (Ok(got), Ok(req)) = (decode_logs(body), ExportLogsServiceRequest::decode(body)) {
        same(&got, &expected_logs(&req))?;
    }
    Ok(())
}

// ---- Unit tests.

fn read_varint(bytes: &[u8]) -> Result<(u64, usize)> {
    let mut r = Reader::new(bytes);
    let v = r.varint()?;
    Ok((v, r.pos))
}

#[test]
fn varint_edge_cases() {
    assert_eq!(read_varint(&[0]), Ok((0, 1)));
    assert_eq!(read_varint(&[0x7f]), Ok((127, 1)));
    assert_eq!(read_varint(&[0x80, 0x01]), Ok((128, 2)));
    assert_eq!(read_varint(&[0xac, 0x02, 0xff]), Ok((300, 2)));
    assert_eq!(read_varint(&[0xff, 0xff, 0x03]), Ok((0xffff, 3)));
    assert_eq!(
        read_varint(&[0x80, 0x00]),
        Ok((0, 2)),
        "non-canonical encodings are valid"
    );
    assert_eq!(
        read_varint(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
        Ok((u64::from(u32::MAX), 5))
    );
    let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(read_varint(&max), Ok((u64::MAX, 10)));
    for v in [
        0,
        1,
        127,
        128,
        16383,
        16384,
        1 << 35,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let bytes = varint(v);
        assert_eq!(read_varint(&bytes), Ok((v, bytes.len())));
    }
    let overflow = |what| DecodeError::Protobuf { what, offset: 0 };
    let mut too_big = max;
    too_big[9] = 0x02;
    assert_eq!(
        read_varint(&too_big),
        Err(overflow("varint overflows 64 bits"))
    );
    assert_eq!(
        read_varint(&[0x80; 11]),
        Err(overflow("varint overflows 64 bits"))
    );
    for truncated in [&[0x80][..], &[0xff, 0xff], &max[..9], &[]] {
        assert_eq!(read_varint(truncated), Err(overflow("truncated varint")));
    }
}

#[test]
fn keys_must_have_a_field_number_and_fit_32_bits() {
    let err = |what| Err(DecodeError::Protobuf { what, offset: 0 });
    assert_eq!(
        decode_traces(&[0x00]).map(|_| ()),
        err("field number 0 is invalid")
    );
    assert_eq!(
        decode_traces(&[0x02, 0x00]).map(|_| ()),
        err("field number 0 is invalid")
    );
    let big = [0x80, 0x80, 0x80, 0x80, 0x10, 0x00];
    assert_eq!(
        decode_logs(&big).map(|_| ()),
        err("field key exceeds 32 bits")
    );
    // The largest field number (2^29 - 1) is a valid unknown field.
    let body = vi((1 << 29) - 1, 5);
    assert_eq!(decode_traces(&body).map(|d| d.batches.len()), Ok(0));
}

#[test]
fn negative_enums_are_ten_byte_varints_truncated_to_i32() {
    let span = span_bytes(
        &[
            vi(SPAN_KIND, -1i64 as u64),
            ld(SPAN_STATUS, &vi(STATUS_CODE, -7i64 as u64)),
        ]
        .concat(),
    );
    let body = traces_body(&[span]);
    let span = only_span(&body);
    assert_eq!((span.kind, span.status.code), (-1, -7));
    // Higher bits of an oversized enum are dropped, as int32 does.
    let span = span_bytes(&vi(SPAN_KIND, (1 << 32) + 3));
    assert_eq!(only_span(&traces_body(&[span])).kind, 3);
    let log = vi(LOG_SEVERITY_NUMBER, -3i64 as u64);
    let body = logs_body(&[log]);
    let d = decode_logs(&body).unwrap();
    assert_eq!(d.batches[0].logs[0].severity_number, -3);
}

fn rich_traces() -> ExportTraceServiceRequest {
    let kv = |k: &str, v| pc::KeyValue {
        key: k.into(),
        value: Some(pc::AnyValue { value: Some(v) }),
        key_strindex: 0,
    };
    use pc::any_value::Value as V;
    let attrs = vec![
        kv("http.request.method", V::StringValue("GET".into())),
        kv("http.response.status_code", V::IntValue(200)),
        kv("ok", V::BoolValue(true)),
        kv("ratio", V::DoubleValue(0.25)),
        kv("raw", V::BytesValue(vec![1, 2, 3])),
        kv(
            "list",
            V::ArrayValue(pc::ArrayValue {
                values: vec![
                    pc::AnyValue {
                        value: Some(V::IntValue(-1)),
                    },
                    pc::AnyValue { value: None },
                ],
            }),
        ),
        kv(
            "map",
            V::KvlistValue(pc::KeyValueList {
                values: vec![kv("inner", V::StringValue("é".into()))],
            }),
        ),
    ];
    let span = pt::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        trace_state: "a=b".into(),
        parent_span_id: vec![3; 8],
        flags: 0x101,
        name: "GET /users/{id}".into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: attrs.clone(),
        dropped_attributes_count: 1,
        events: vec![pt::span::Event {
            time_unix_nano: 1_700_000_000_100_000_000,
            name: "exception".into(),
            attributes: attrs.clone(),
            dropped_attributes_count: 2,
        }],
        dropped_events_count: 3,
        links: vec![pt::span::Link {
            trace_id: vec![4; 16],
            span_id: vec![5; 8],
            trace_state: "c=d".into(),
            attributes: attrs.clone(),
            dropped_attributes_count: 4,
            flags: 1,
        }],
        dropped_links_count: 5,
        status: Some(pt::Status {
            message: "boom".into(),
            code: 2,
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: Some(pr::Resource {
                attributes: vec![kv("service.name", V::StringValue("checkout".into()))],
                dropped_attributes_count: 6,
                entity_refs: vec![pc::EntityRef {
                    schema_url: "u".into(),
                    r#type: "service".into(),
                    id_keys: vec!["service.name".into()],
                    description_keys: vec![],
                }],
            }),
            scope_spans: vec![pt::ScopeSpans {
                scope: Some(pc::InstrumentationScope {
                    name: "lib".into(),
                    version: "1.0".into(),
                    attributes: attrs.clone(),
                    dropped_attributes_count: 7,
                }),
                spans: vec![span.clone(), span],
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.25.0".into(),
        }],
    }
}

fn rich_logs() -> ExportLogsServiceRequest {
    let traces = rich_traces();
    let rs = &traces.resource_spans[0];
    let ss = &rs.scope_spans[0];
    let log = pl::LogRecord {
        time_unix_nano: 1,
        observed_time_unix_nano: 2,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: ss.spans[0].attributes[6].value.clone(),
        attributes: ss.spans[0].attributes.clone(),
        dropped_attributes_count: 3,
        flags: 1,
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        event_name: "device.app.lifecycle".into(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![pl::ResourceLogs {
            resource: rs.resource.clone(),
            scope_logs: vec![pl::ScopeLogs {
                scope: ss.scope.clone(),
                log_records: vec![log.clone(), log],
                schema_url: ss.schema_url.clone(),
            }],
            schema_url: rs.schema_url.clone(),
        }],
    }
}

#[test]
fn a_rich_request_decodes_as_prost_does() {
    let traces = rich_traces().encode_to_vec();
    agrees_with_prost(&traces).unwrap();
    let d = decode_traces(&traces).unwrap();
    assert_eq!((d.batches.len(), d.accepted, d.rejected.count()), (1, 2, 0));
    let batch = &d.batches[0];
    assert_eq!(service_name_of(&batch.resource), "checkout");
    assert_eq!(
        batch.resource.schema_url,
        "https://opentelemetry.io/schemas/1.25.0"
    );
    assert_eq!(
        batch.scope.schema_url,
        "https://opentelemetry.io/schemas/1.26.0"
    );
    assert_eq!(batch.spans[0].parent_span_id, Some(SpanId([3; 8])));
    assert_eq!(batch.spans[0].links[0].trace_id, TraceId([4; 16]));

    let logs = rich_logs().encode_to_vec();
    agrees_with_prost(&logs).unwrap();
    let d = decode_logs(&logs).unwrap();
    assert_eq!((d.batches.len(), d.accepted, d.rejected.count()), (1, 2, 0));
    assert!(matches!(d.batches[0].logs[0].body, AnyValue::KvList(_)));
}

fn service_name_of<'r>(resource: &'r Resource<'_>) -> &'r str {
    crate::domain::service_name(&resource.attributes)
}

#[test]
fn strings_and_bytes_borrow_from_the_body() {
    let body = rich_traces().encode_to_vec();
    let d = decode_traces(&body).unwrap();
    let span = &d.batches[0].spans[0];
    assert!(matches!(span.name, Cow::Borrowed(_)));
    assert!(span
        .attributes
        .iter()
        .all(|kv| matches!(kv.key, Cow::Borrowed(_))));
    assert!(matches!(
        attr(&span.attributes, "http.request.method"),
        AnyValue::String(Cow::Borrowed(_))
    ));
    assert!(matches!(
        attr(&span.attributes, "raw"),
        AnyValue::Bytes(Cow::Borrowed(_))
    ));
    let body_range = body.as_ptr_range();
    assert!(body_range.contains(&span.name.as_ptr()));
}

#[test]
fn every_truncation_of_a_valid_message_is_an_error() {
    for body in [rich_traces().encode_to_vec(), rich_logs().encode_to_vec()] {
        assert!(decode_traces(&body[..0]).unwrap().batches.is_empty());
        // The request holds a single top-level field: every shorter prefix cuts into it.
        for n in 1..body.len() {
            assert!(decode_traces(&body[..n]).is_err(), "traces prefix {n}");
            assert!(decode_logs(&body[..n]).is_err(), "logs prefix {n}");
        }
    }
}

/// A trace request with `extra` appended to every message in it.
fn traces_with(extra: &[u8]) -> Vec<u8> {
    let x = extra.to_vec();
    let any = [ld(ANY_STRING, b"v"), x.clone()].concat();
    let kv = [
        ld(KEY_VALUE_KEY, b"k"),
        ld(KEY_VALUE_VALUE, &any),
        x.clone(),
    ]
    .concat();
    let list = [ld(LIST_VALUES, &kv), x.clone()].concat();
    let kv_list = [
        ld(KEY_VALUE_KEY, b"l"),
        ld(
            KEY_VALUE_VALUE,
            &[ld(ANY_KVLIST, &list), x.clone()].concat(),
        ),
        x.clone(),
    ]
    .concat();
    let array = [ld(LIST_VALUES, &any), x.clone()].concat();
    let kv_array = [
        ld(KEY_VALUE_KEY, b"a"),
        ld(
            KEY_VALUE_VALUE,
            &[ld(ANY_ARRAY, &array), x.clone()].concat(),
        ),
        x.clone(),
    ]
    .concat();
    let event = [
        fx64(EVENT_TIME_UNIX_NANO, 5),
        ld(EVENT_NAME, b"ev"),
        ld(EVENT_ATTRIBUTES, &kv),
        x.clone(),
    ]
    .concat();
    let link = [
        ld(LINK_TRACE_ID, &[1; 16]),
        ld(LINK_SPAN_ID, &[2; 8]),
        ld(LINK_ATTRIBUTES, &kv),
        x.clone(),
    ]
    .concat();
    let status = [ld(STATUS_MESSAGE, b"msg"), vi(STATUS_CODE, 2), x.clone()].concat();
    let span = span_bytes(
        &[
            ld(SPAN_NAME, b"name"),
            fx64(SPAN_START_TIME_UNIX_NANO, 1),
            fx64(SPAN_END_TIME_UNIX_NANO, 2),
            ld(SPAN_ATTRIBUTES, &kv),
            ld(SPAN_ATTRIBUTES, &kv_list),
            ld(SPAN_ATTRIBUTES, &kv_array),
            ld(SPAN_EVENTS, &event),
            ld(SPAN_LINKS, &link),
            ld(SPAN_STATUS, &status),
            fx32(SPAN_FLAGS, 1),
            x.clone(),
        ]
        .concat(),
    );
    let scope = [ld(SCOPE_NAME, b"lib"), ld(SCOPE_ATTRIBUTES, &kv), x.clone()].concat();
    let resource = [ld(RESOURCE_ATTRIBUTES, &kv), x.clone()].concat();
    let ss = [
        ld(SCOPE_ITEMS_SCOPE, &scope),
        ld(SCOPE_ITEMS_ITEMS, &span),
        x.clone(),
    ]
    .concat();
    let rs = [
        ld(RESOURCE_ITEMS_RESOURCE, &resource),
        ld(RESOURCE_ITEMS_SCOPE_ITEMS, &ss),
        x.clone(),
    ]
    .concat();
    [ld(REQUEST_RESOURCE_ITEMS, &rs), x].concat()
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let plain = traces_with(&[]);
    let want = decode_traces(&plain).unwrap();
    assert_eq!(want.accepted, 1);
    let span = &want.batches[0].spans[0];
    assert_eq!(
        (span.attributes.len(), span.events.len(), span.links.len()),
        (3, 1, 1)
    );
    let unknown = [
        vi(99, 300),
        fx64(98, 7),
        ld(97, b"junk"),
        fx32(96, 5),
        ld(1000, &[0xff, 0xfe]), // bytes, not checked as UTF-8
        vi((1 << 29) - 1, u64::MAX),
    ]
    .concat();
    let noisy = traces_with(&unknown);
    let got = decode_traces(&noisy).unwrap();
    assert_eq!(got.batches, want.batches);
    agrees_with_prost(&noisy).unwrap();
    // The profiling-only fields are ignored too.
    let kv = [
        ld(KEY_VALUE_KEY, b"k"),
        vi(3, 9),
        ld(KEY_VALUE_VALUE, &vi(ANY_STRING_STRINDEX, 4)),
    ]
    .concat();
    let body = traces_body(&[span_bytes(&ld(SPAN_ATTRIBUTES, &kv))]);
    let span = only_span(&body);
    assert_eq!(span.attributes[0].value, AnyValue::Empty);
}

#[test]
fn groups_and_undefined_wire_types_are_errors() {
    for (wire, what) in [
        (SGROUP, "groups (wire types 3, 4) are not supported"),
        (EGROUP, "groups (wire types 3, 4) are not supported"),
        (6, "invalid wire type (6 or 7)"),
        (7, "invalid wire type (6 or 7)"),
    ] {
        assert_eq!(
            decode_traces(&key(50, wire)).map(|_| ()),
            Err(DecodeError::Protobuf { what, offset: 0 })
        );
        let body = traces_body(&[span_bytes(&key(50, wire))]);
        let offset = body.len() - key(50, wire).len();
        assert_eq!(
            decode_traces(&body).map(|_| ()),
            Err(DecodeError::Protobuf { what, offset })
        );
    }
}

#[test]
fn a_known_field_with_the_wrong_wire_type_is_an_error_at_its_key() {
    let cases: [(Vec<u8>, &str); 5] = [
        (vi(SPAN_NAME, 1), "wrong wire type for Span.name"),
        (
            ld(SPAN_START_TIME_UNIX_NANO, &[0; 8]),
            "wrong wire type for Span.start_time_unix_nano",
        ),
        (fx64(SPAN_FLAGS, 1), "wrong wire type for Span.flags"),
        (
            fx32(SPAN_ATTRIBUTES, 1),
            "wrong wire type for Span.attributes",
        ),
        (ld(SPAN_KIND, &[1]), "wrong wire type for Span.kind"),
    ];
    for (field, what) in cases {
        let body = traces_body(&[span_bytes(&field)]);
        let offset = body.len() - field.len();
        assert_eq!(
            decode_traces(&body).map(|_| ()),
            Err(DecodeError::Protobuf { what, offset })
        );
    }
    let body = vi(REQUEST_RESOURCE_ITEMS, 1);
    let what = "wrong wire type for ExportLogsServiceRequest.resource_logs";
    assert_eq!(
        decode_logs(&body).map(|_| ()),
        Err(DecodeError::Protobuf { what, offset: 0 })
    );
}

#[test]
fn framing_errors_name_their_byte() {
    // A length past the end of its message: the name claims 9 bytes, its span has 2.
    let span = span_bytes(&[key(SPAN_NAME, LEN), vec![9, b'a']].concat());
    let body = traces_body(&[span]);
    let what = "length runs past the end of the message";
    assert_eq!(
        decode_traces(&body).map(|_| ()),
        Err(DecodeError::Protobuf {
            what,
            offset: body.len() - 2
        })
    );
    // A fixed64 cut short by the end of its message, although the body goes on.
    let span = span_bytes(&[key(SPAN_START_TIME_UNIX_NANO, I64), vec![1, 2, 3]].concat());
    let tail = vi(99, 1);
    let body = [traces_body(&[span]), tail.clone()].concat();
    let what = "truncated fixed64";
    assert_eq!(
        decode_traces(&body).map(|_| ()),
        Err(DecodeError::Protobuf {
            what,
            offset: body.len() - tail.len() - 3
        })
    );
}

#[test]
fn invalid_utf8_is_an_error_at_the_string() {
    let body = traces_body(&[span_bytes(&ld(SPAN_NAME, &[b'o', b'k', 0xc3, 0x28]))]);
    assert_eq!(
        decode_traces(&body).map(|_| ()),
        Err(DecodeError::Utf8 {
            offset: body.len() - 4
        })
    );
    let kv = ld(KEY_VALUE_KEY, &[0xff]);
    let body = logs_body(&[ld(LOG_ATTRIBUTES, &kv)]);
    assert_eq!(
        decode_logs(&body).map(|_| ()),
        Err(DecodeError::Utf8 {
            offset: body.len() - 1
        })
    );
    // Bytes fields are not strings.
    let body = traces_body(&[span_bytes(&ld(
        SPAN_ATTRIBUTES,
        &ld(KEY_VALUE_VALUE, &ld(ANY_BYTES, &[0xff])),
    ))]);
    assert!(decode_traces(&body).is_ok());
}

#[test]
fn singular_messages_merge_and_scalars_take_the_last_value() {
    let resource = |fields: &[Vec<u8>]| ld(RESOURCE_ITEMS_RESOURCE, &fields.concat());
    let scope = |fields: &[Vec<u8>]| ld(SCOPE_ITEMS_SCOPE, &fields.concat());
    let status = |fields: &[Vec<u8>]| ld(SPAN_STATUS, &fields.concat());
    let value = |fields: &[Vec<u8>]| ld(KEY_VALUE_VALUE, &fields.concat());
    let array = |items: &[&str]| {
        let values: Vec<u8> = items
            .iter()
            .flat_map(|i| ld(LIST_VALUES, &ld(ANY_STRING, i.as_bytes())))
            .collect();
        ld(ANY_ARRAY, &values)
    };
    let kv = |k: &str, fields: Vec<u8>| {
        ld(
            SPAN_ATTRIBUTES,
            &[ld(KEY_VALUE_KEY, k.as_bytes()), fields].concat(),
        )
    };
    let span = span_bytes(
        &[
            ld(SPAN_NAME, b"first"),
            ld(SPAN_NAME, b"last"),
            status(&[ld(STATUS_MESSAGE, b"a"), vi(STATUS_CODE, 2)]),
            status(&[ld(STATUS_MESSAGE, b"b")]),
            kv(
                "str-then-int",
                [value(&[ld(ANY_STRING, b"x")]), value(&[vi(ANY_INT, 7)])].concat(),
            ),
            kv(
                "oneof-last",
                value(&[ld(ANY_STRING, b"x"), vi(ANY_BOOL, 1)]),
            ),
            kv(
                "arrays-merge",
                [value(&[array(&["a"])]), value(&[array(&["b", "c"])])].concat(),
            ),
            kv(
                "array-reset",
                value(&[array(&["a"]), ld(ANY_STRING, b"s"), array(&["b"])]),
            ),
            kv(
                "kvlists-merge",
                value(&[
                    ld(ANY_KVLIST, &ld(LIST_VALUES, &kv_str("p", "1"))),
                    ld(ANY_KVLIST, &ld(LIST_VALUES, &kv_str("q", "2"))),
                ]),
            ),
            kv("no-value", vec![]),
            kv("empty-value", value(&[])),
            ld(SPAN_TRACE_ID, &[9; 16]),
        ]
        .concat(),
    );
    let ss = [
        scope(&[
            ld(SCOPE_NAME, b"x"),
            ld(SCOPE_VERSION, b"1"),
            ld(SCOPE_ATTRIBUTES, &kv_str("s1", "v")),
        ]),
        ld(SCOPE_ITEMS_ITEMS, &span),
        scope(&[
            ld(SCOPE_NAME, b"y"),
            ld(SCOPE_ATTRIBUTES, &kv_str("s2", "v")),
        ]),
    ]
    .concat();
    // The resource comes in two parts, the second after the scopes.
    let rs = [
        resource(&[
            ld(RESOURCE_ATTRIBUTES, &kv_str("r1", "v")),
            vi(RESOURCE_DROPPED_ATTRIBUTES_COUNT, 3),
        ]),
        ld(RESOURCE_ITEMS_SCOPE_ITEMS, &ss),
        resource(&[ld(RESOURCE_ATTRIBUTES, &kv_str("r2", "v"))]),
    ]
    .concat();
    let body = ld(REQUEST_RESOURCE_ITEMS, &rs);
    agrees_with_prost(&body).unwrap();
    let d = decode_traces(&body).unwrap();
    let batch = &d.batches[0];
    let keys = |kvs: &[KeyValue]| kvs.iter().map(|kv| kv.key.to_string()).collect::<Vec<_>>();
    assert_eq!(keys(&batch.resource.attributes), ["r1", "r2"]);
    assert_eq!(batch.resource.dropped_attributes_count, 3);
    assert_eq!((&*batch.scope.name, &*batch.scope.version), ("y", "1"));
    assert_eq!(keys(&batch.scope.attributes), ["s1", "s2"]);
    let span = &batch.spans[0];
    assert_eq!(span.name, "last");
    assert_eq!(span.trace_id, TraceId([9; 16]));
    assert_eq!(
        span.status,
        Status {
            message: Cow::Borrowed("b"),
            code: 2
        }
    );
    let a = &span.attributes;
    assert_eq!(attr(a, "str-then-int"), &AnyValue::Int(7));
    assert_eq!(attr(a, "oneof-last"), &AnyValue::Bool(true));
    assert_eq!(
        attr(a, "arrays-merge"),
        &AnyValue::Array(vec![s("a"), s("b"), s("c")])
    );
    assert_eq!(attr(a, "array-reset"), &AnyValue::Array(vec![s("b")]));
    let AnyValue::KvList(kvs) = attr(a, "kvlists-merge") else {
        panic!("not a kvlist")
    };
    assert_eq!(keys(kvs), ["p", "q"]);
    assert_eq!(attr(a, "no-value"), &AnyValue::Empty);
    assert_eq!(attr(a, "empty-value"), &AnyValue::Empty);

    let log = [
        ld(LOG_BODY, &ld(ANY_STRING, b"x")),
        ld(LOG_BODY, &vi(ANY_INT, 3)),
    ]
    .concat();
    let body = logs_body(&[log]);
    agrees_with_prost(&body).unwrap();
    assert_eq!(
        decode_logs(&body).unwrap().batches[0].logs[0].body,
        AnyValue::Int(3)
    );
}

#[test]
fn invalid_spans_are_rejected_and_counted() {
    let good = || span_bytes(&[]);
    let ids = |t: &[u8], s: &[u8], extra: Vec<u8>| {
        [ld(SPAN_TRACE_ID, t), ld(SPAN_SPAN_ID, s), extra].concat()
    };
    let spans = [
        good(),
        ids(&[1; 15], &[2; 8], vec![]),
        ids(&[0; 16], &[2; 8], vec![]),
        ids(&[1; 16], &[0; 8], vec![]),
        ids(&[1; 16], &[], vec![]),
        span_bytes(&ld(SPAN_PARENT_SPAN_ID, &[3; 4])),
        span_bytes(&ld(
            SPAN_LINKS,
            &[ld(LINK_TRACE_ID, &[1; 3]), ld(LINK_SPAN_ID, &[2; 8])].concat(),
        )),
        span_bytes(
            &[
                fx64(SPAN_START_TIME_UNIX_NANO, 5),
                fx64(SPAN_END_TIME_UNIX_NANO, 4),
            ]
            .concat(),
        ),
        span_bytes(&ld(SPAN_PARENT_SPAN_ID, &[0; 8])),
    ];
    let body = traces_body(&spans);
    agrees_with_prost(&body).unwrap();
    let d = decode_traces(&body).unwrap();
    assert_eq!((d.accepted, d.rejected.count()), (2, 7));
    let by = |r| d.rejected.count_of(r);
    use crate::domain::validate::RejectReason as R;
    assert_eq!(by(R::TraceId), 2, "15 bytes, zero");
    assert_eq!(by(R::SpanId), 2, "zero, empty");
    assert_eq!(by(R::ParentSpanId), 1, "4 bytes");
    assert_eq!(by(R::Link), 1);
    assert_eq!(by(R::EndBeforeStart), 1);
    assert_eq!(
        d.rejected.first.as_deref(),
        Some("trace id must be 16 bytes, got 15")
    );
    assert_eq!(
        d.batches[0].spans[1].parent_span_id, None,
        "a zero parent is a root"
    );

    // A scope whose spans are all invalid leaves no batch behind.
    let body = traces_body(&[ids(&[1; 15], &[2; 8], vec![])]);
    let d = decode_traces(&body).unwrap();
    assert_eq!((d.batches.len(), d.accepted, d.rejected.count()), (0, 0, 1));
}

#[test]
fn invalid_logs_are_rejected_and_counted() {
    let logs = [
        vec![],
        ld(LOG_TRACE_ID, &[1; 2]),
        ld(LOG_SPAN_ID, &[1; 3]),
        [ld(LOG_TRACE_ID, &[0; 16]), ld(LOG_SPAN_ID, &[0; 8])].concat(),
        [ld(LOG_TRACE_ID, &[1; 16]), ld(LOG_SPAN_ID, &[2; 8])].concat(),
    ];
    let body = logs_body(&logs);
    agrees_with_prost(&body).unwrap();
    let d = decode_logs(&body).unwrap();
    assert_eq!((d.accepted, d.rejected.count()), (3, 2));
    use crate::domain::validate::RejectReason as R;
    assert_eq!(d.rejected.count_of(R::TraceId), 1);
    assert_eq!(d.rejected.count_of(R::SpanId), 1);
    assert_eq!(
        d.rejected.first.as_deref(),
        Some("log trace id must be empty or 16 bytes, got 2")
    );
    let logs = &d.batches[0].logs;
    assert_eq!((logs[1].trace_id, logs[1].span_id), (None, None));
    assert_eq!(
        (logs[2].trace_id, logs[2].span_id),
        (Some(TraceId([1; 16])), Some(SpanId([2; 8])))
    );
}

#[test]
fn resources_are_copied_into_each_scope_batch() {
    let ss = |schema: &str, spans: &[Vec<u8>]| {
        let mut m: Vec<u8> = spans
            .iter()
            .flat_map(|s| ld(SCOPE_ITEMS_ITEMS, s))
            .collect();
        m.extend(ld(SCOPE_ITEMS_SCHEMA_URL, schema.as_bytes()));
        ld(RESOURCE_ITEMS_SCOPE_ITEMS, &m)
    };
    let rs = |name: &str, scopes: Vec<u8>| {
        let res = ld(
            RESOURCE_ITEMS_RESOURCE,
            &ld(RESOURCE_ATTRIBUTES, &kv_str("service.name", name)),
        );
        ld(
            REQUEST_RESOURCE_ITEMS,
            &[ld(RESOURCE_ITEMS_SCHEMA_URL, b"rs"), scopes, res].concat(),
        )
    };
    let body = [
        rs(
            "a",
            [
                ss("s1", &[span_bytes(&[])]),
                ss("empty", &[]),
                ss("s2", &[span_bytes(&[]), span_bytes(&[])]),
            ]
            .concat(),
        ),
        rs("b", ss("s3", &[])),
        rs("c", ss("s4", &[span_bytes(&[])])),
    ]
    .concat();
    agrees_with_prost(&body).unwrap();
    let d = decode_traces(&body).unwrap();
    let shape: Vec<_> = d
        .batches
        .iter()
        .map(|b| {
            (
                service_name_of(&b.resource),
                &*b.resource.schema_url,
                &*b.scope.schema_url,
                b.spans.len(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("a", "rs", "s1", 1),
            ("a", "rs", "s2", 2),
            ("c", "rs", "s4", 1)
        ]
    );
    assert_eq!(d.accepted, 4);
}

#[test]
fn kept_items_are_sanitised() {
    let long_key = "k".repeat(crate::limits::ATTRIBUTE_KEY_BYTES_MAX + 10);
    let attrs: Vec<u8> = (0..crate::limits::ATTRIBUTES_COUNT_MAX + 2)
        .flat_map(|i| {
            ld(
                SPAN_ATTRIBUTES,
                &kv_str(if i == 0 { &long_key } else { "k" }, "v"),
            )
        })
        .collect();
    let body = traces_body(&[span_bytes(&attrs)]);
    let d = decode_traces(&body).unwrap();
    assert_eq!(
        d.sanitised,
        Sanitised {
            truncated_values: 1,
            dropped_attributes: 2,
            flattened_values: 0
        }
    );
    let span = &d.batches[0].spans[0];
    assert_eq!(span.attributes.len(), crate::limits::ATTRIBUTES_COUNT_MAX);
    assert_eq!(span.dropped_attributes_count, 2);
    assert_eq!(
        span.attributes[0].key.len(),
        crate::limits::ATTRIBUTE_KEY_BYTES_MAX
    );
}

/// An `AnyValue` that nests `levels` arrays (or key-value lists) around a string.
fn nested_value(levels: usize, kvlists: bool) -> Vec<u8> {
    let mut v = ld(ANY_STRING, b"x");
    for _ in 0..levels {
        v = if kvlists {
            ld(
                ANY_KVLIST,
                &ld(
                    LIST_VALUES,
                    &[ld(KEY_VALUE_KEY, b"k"), ld(KEY_VALUE_VALUE, &v)].concat(),
                ),
            )
        } else {
            ld(ANY_ARRAY, &ld(LIST_VALUES, &v))
        };
    }
    v
}

fn nested_attribute(levels: usize, kvlists: bool) -> Vec<u8> {
    let value = nested_value(levels, kvlists);
    [ld(KEY_VALUE_KEY, b"deep"), ld(KEY_VALUE_VALUE, &value)].concat()
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    // A span attribute's value is at depth 5; each array adds 2 levels, each kvlist 3.
    let arrays_max = (PROTO_DEPTH_MAX - (ITEM_DEPTH + 2)) / 2;
    let kvlists_max = (PROTO_DEPTH_MAX - (ITEM_DEPTH + 2)) / 3;
    for (levels, kvlists) in [(arrays_max, false), (kvlists_max, true)] {
        let ok = traces_body(&[span_bytes(&ld(
            SPAN_ATTRIBUTES,
            &nested_attribute(levels, kvlists),
        ))]);
        assert!(decode_traces(&ok).is_ok(), "{levels} levels");
        let deep = traces_body(&[span_bytes(&ld(
            SPAN_ATTRIBUTES,
            &nested_attribute(levels + 1, kvlists),
        ))]);
        assert_eq!(decode_traces(&deep).map(|_| ()), Err(DecodeError::TooDeep));
    }
    // An event's attributes are one level deeper than the span's: 9 key-value lists put the
    // innermost pair at depth 32, where its value (33) is past the limit, even though it has
    // the fast path's shape; 8 put it at 29.
    let event_with = |levels: usize| {
        traces_body(&[span_bytes(&ld(
            SPAN_EVENTS,
            &ld(EVENT_ATTRIBUTES, &nested_attribute(levels, true)),
        ))])
    };
    assert!(decode_traces(&event_with(8)).is_ok());
    assert_eq!(
        decode_traces(&event_with(9)).map(|_| ()),
        Err(DecodeError::TooDeep)
    );
    // Far deeper input is refused without exhausting the stack.
    let log = ld(LOG_BODY, &nested_value(5000, false));
    assert_eq!(
        decode_logs(&logs_body(&[log])).map(|_| ()),
        Err(DecodeError::TooDeep)
    );
    // Values past VALUE_DEPTH_MAX (within the protobuf limit) are flattened, and counted.
    let ok = traces_body(&[span_bytes(&ld(
        SPAN_ATTRIBUTES,
        &nested_attribute(arrays_max, false),
    ))]);
    assert_eq!(decode_traces(&ok).unwrap().sanitised.flattened_values, 1);
}

// ---- Memory budget.

fn too_large<T: Debug>(result: Result<Decoded<T>, DecodeError>) {
    assert_eq!(
        result.map(|_| ()),
        Err(DecodeError::TooLarge {
            max: crate::limits::REQUEST_VALUES_BYTES_MAX
        })
    );
}

#[test]
fn millions_of_empty_items_are_too_large() {
    // Eight million empty spans, or attributes: 16 MB of protobuf, gigabytes decoded.
    let empty = |field: u32| ld(field, &[]).repeat(8 << 20);
    too_large(decode_traces(&ld(
        REQUEST_RESOURCE_ITEMS,
        &ld(RESOURCE_ITEMS_SCOPE_ITEMS, &empty(SCOPE_ITEMS_ITEMS)),
    )));
    too_large(decode_traces(&traces_body(&[span_bytes(&empty(
        SPAN_ATTRIBUTES,
    ))])));
    // Five million attributes of the fast path's shape: 47 MB of protobuf. The fast path
    // charges the budget as the general decoder does.
    let pair = kv_value("k", &vi(ANY_BOOL, 1));
    assert!(key_value_fast(&pair).is_some());
    let attribute = ld(SPAN_ATTRIBUTES, &pair);
    too_large(decode_traces(&traces_body(&[span_bytes(
        &attribute.repeat(5 << 20),
    )])));
}

#[test]
fn copies_of_the_resource_for_each_scope_are_charged() {
    // A resource of the most attributes kept, each an array of the most values kept: about
    // 4 MiB decoded, copied into the batch of each of `scopes` scopes.
    let values = ld(LIST_VALUES, &[]).repeat(crate::limits::VALUE_ELEMENTS_MAX);
    let attrs: Vec<u8> = (0..crate::limits::ATTRIBUTES_COUNT_MAX)
        .flat_map(|i| {
            let kv = [
                ld(KEY_VALUE_KEY, format!("k{i}").as_bytes()),
                ld(KEY_VALUE_VALUE, &ld(ANY_ARRAY, &values)),
            ]
            .concat();
            ld(RESOURCE_ATTRIBUTES, &kv)
        })
        .collect();
    let body = |scopes: usize| {
        let scope = ld(
            RESOURCE_ITEMS_SCOPE_ITEMS,
            &ld(SCOPE_ITEMS_ITEMS, &span_bytes(&[])),
        );
        ld(
            REQUEST_RESOURCE_ITEMS,
            &[ld(RESOURCE_ITEMS_RESOURCE, &attrs), scope.repeat(scopes)].concat(),
        )
    };
    let three = body(3);
    let d = decode_traces(&three).unwrap();
    assert_eq!(d.batches.len(), 3);
    assert!(d
        .batches
        .iter()
        .all(|b| b.resource == d.batches[0].resource));
    let AnyValue::Array(values) = &d.batches[2].resource.attributes[0].value else {
        panic!("not an array")
    };
    assert_eq!(values.len(), crate::limits::VALUE_ELEMENTS_MAX);
    // 200 copies of 4 MiB: past the budget, from a body of 300 KB.
    too_large(decode_traces(&body(200)));
}

mod fields;
mod props;

// ---- The fast path for attributes.

/// What the general decoder makes of a `KeyValue` message at a span attribute's depth.
fn general_key_value(buf: &[u8]) -> Result<KeyValue<'_>> {
    let mut kv = KeyValue {
        key: Cow::Borrowed(""),
        value: AnyValue::Empty,
    };
    key_value(Reader::new(buf), &mut kv, ITEM_DEPTH + 1).map(|()| kv)
}

fn kv_value(k: &str, value: &[u8]) -> Vec<u8> {
    [ld(KEY_VALUE_KEY, k.as_bytes()), ld(KEY_VALUE_VALUE, value)].concat()
}

#[test]
fn the_fast_attribute_path_agrees_with_the_general_decoder() {
    let key_127 = "k".repeat(127);
    let key_128 = "k".repeat(128);
    // The longest string value of one-byte lengths: 2 + 125 = 127 bytes of value message.
    let value_125 = "v".repeat(125);
    let value_126 = "v".repeat(126);
    let fast = [
        kv_str("http.method", "GET"),
        kv_str("", ""),
        kv_str("ключ", "значение ✓"),
        kv_str(&key_127, &value_125),
        kv_value("b", &vi(ANY_BOOL, 1)),
        kv_value("b", &vi(ANY_BOOL, 0)),
        kv_value("i", &vi(ANY_INT, 0)),
        kv_value("i", &vi(ANY_INT, 200)),
        kv_value("i", &vi(ANY_INT, u64::MAX)),
        kv_value("d", &fx64(ANY_DOUBLE, 1.5f64.to_bits())),
        kv_value("d", &fx64(ANY_DOUBLE, (-0.0f64).to_bits())),
    ];
    for m in &fast {
        let got = key_value_fast(m).unwrap_or_else(|| panic!("not the fast shape: {m:?}"));
        assert_eq!(Ok(got), general_key_value(m), "{m:?}");
    }
    let general = [
        // Lengths of two bytes.
        kv_str(&key_128, "v"),
        kv_str("k", &value_126),
        // Other orders, missing and repeated fields.
        [
            ld(KEY_VALUE_VALUE, &ld(ANY_STRING, b"v")),
            ld(KEY_VALUE_KEY, b"k"),
        ]
        .concat(),
        ld(KEY_VALUE_KEY, b"k"),
        ld(KEY_VALUE_VALUE, &ld(ANY_STRING, b"v")),
        [ld(KEY_VALUE_KEY, b"a"), kv_str("b", "v")].concat(),
        [kv_str("k", "v"), vi(9, 1)].concat(),
        kv_value("k", &[]),
        kv_value("k", &[ld(ANY_STRING, b"v"), vi(ANY_INT, 1)].concat()),
        // Other kinds of value.
        kv_value("k", &ld(ANY_BYTES, b"v")),
        kv_value("k", &ld(ANY_ARRAY, &ld(LIST_VALUES, &ld(ANY_STRING, b"v")))),
        kv_value("k", &ld(ANY_KVLIST, &ld(LIST_VALUES, &kv_str("a", "b")))),
        kv_value("k", &vi(ANY_BOOL, 128)),
    ];
    // Malformed: the general decoder reports these.
    let malformed = [
        kv_value("k", &ld(ANY_STRING, &[0xFF])),
        [
            ld(KEY_VALUE_KEY, &[0xFF]),
            ld(KEY_VALUE_VALUE, &ld(ANY_STRING, b"v")),
        ]
        .concat(),
        kv_value("k", &[TAG_ANY_INT]),
        kv_value("k", &[&[TAG_ANY_INT][..], &[0xFF; 10], &[0x01]].concat()),
        kv_value("k", &[&[TAG_ANY_DOUBLE][..], &[0; 7]].concat()),
        [kv_str("k", "v"), vec![0x00]].concat(),
    ];
    for m in general.iter().chain(&malformed) {
        assert_eq!(key_value_fast(m), None, "{m:?}");
    }
    for m in &malformed {
        assert!(general_key_value(m).is_err(), "{m:?}");
    }
}

#[test]
fn is_ascii_agrees_with_std_at_every_length_and_position() {
    for n in 0..48 {
        let clean = vec![b'a'; n];
        assert!(is_ascii(&clean), "{n} ASCII bytes");
        for at in 0..n {
            for high in [0x80u8, 0xC3, 0xFF] {
                let mut b = clean.clone();
                b[at] = high;
                assert_eq!(is_ascii(&b), b.is_ascii(), "{n} bytes, {high:#x} at {at}");
                assert!(!is_ascii(&b));
            }
        }
    }
}

#[test]
fn run_len_counts_the_elements_of_a_run() {
    let run_len_of = |body: &[u8]| {
        let mut r = Reader::new(body);
        r.key().unwrap().expect("a key");
        r.run_len()
    };
    let long = [7u8; 200];
    // One-byte keys and lengths; a two-byte length; then another field.
    let body = [
        ld(9, b"a"),
        ld(9, b""),
        ld(9, &long),
        ld(9, b"b"),
        ld(8, b"c"),
        ld(9, b"d"),
    ]
    .concat();
    assert_eq!(run_len_of(&body), 4);
    // Keys of two bytes (field 20).
    let body = [ld(20, b"a"), ld(20, &long), ld(20, b"b")].concat();
    assert_eq!(run_len_of(&body), 3);
    // The last element runs past the end: not counted.
    let mut body = [ld(9, b"a"), ld(9, b"bb")].concat();
    body.pop();
    assert_eq!(run_len_of(&body), 1);
    // A key encoded longer than it needs ends the count (only a capacity hint).
    let body = [ld(9, b"a"), vec![0x80 | 0x4a, 0x00, 1, b'b']].concat();
    assert_eq!(run_len_of(&body), 1);
}
