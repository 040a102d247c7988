use super::*;
use crate::domain::{SpanId, TraceId};
use crate::limits::{REQUEST_VALUES_BYTES_MAX, VALUE_DEPTH_MAX};

fn traces(json: &str) -> Decoded<SpanBatch<'_>> {
    decode_traces_json(json.as_bytes()).expect("valid OTLP JSON")
}

fn logs(json: &str) -> Decoded<LogBatch<'_>> {
    decode_logs_json(json.as_bytes()).expect("valid OTLP JSON")
}

fn json_error(result: Result<Decoded<SpanBatch<'_>>, DecodeError>) -> String {
    match result {
        Err(DecodeError::Json(msg)) => msg,
        other => panic!("expected DecodeError::Json, got {other:?}"),
    }
}

fn s(v: &str) -> AnyValue<'_> {
    AnyValue::String(Cow::Borrowed(v))
}

fn kv<'a>(key: &'a str, value: AnyValue<'a>) -> KeyValue<'a> {
    KeyValue {
        key: Cow::Borrowed(key),
        value,
    }
}

/// A one-span request whose span carries `fields` after valid ids.
fn one_span(fields: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{
                "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"{fields}}}]}}]}}]}}"#
    )
}

/// The value of the only attribute of the only span of `fields`.
fn attr_value(value: &str) -> Result<AnyValue<'static>, DecodeError> {
    let body = one_span(&format!(r#","attributes":[{{"key":"k","value":{value}}}]"#));
    let decoded = decode_traces_json(body.as_bytes())?;
    let value = decoded.batches[0].spans[0].attributes[0].value.clone();
    Ok(own_value(value))
}

fn own_value(v: AnyValue<'_>) -> AnyValue<'static> {
    match v {
        AnyValue::Empty => AnyValue::Empty,
        AnyValue::String(s) => AnyValue::String(Cow::Owned(s.into_owned())),
        AnyValue::Bool(b) => AnyValue::Bool(b),
        AnyValue::Int(i) => AnyValue::Int(i),
        AnyValue::Double(d) => AnyValue::Double(d),
        AnyValue::Bytes(b) => AnyValue::Bytes(Cow::Owned(b.into_owned())),
        AnyValue::Array(a) => AnyValue::Array(a.into_iter().map(own_value).collect()),
        AnyValue::KvList(l) => AnyValue::KvList(
            l.into_iter()
                .map(|kv| KeyValue {
                    key: Cow::Owned(kv.key.into_owned()),
                    value: own_value(kv.value),
                })
                .collect(),
        ),
    }
}

/// `examples/trace.json` of the OTLP repository.
const SPEC_TRACE: &str = r#"{
      "resourceSpans": [
        {
          "resource": {
            "attributes": [
              { "key": "service.name", "value": { "stringValue": "my.service" } }
            ]
          },
          "scopeSpans": [
            {
              "scope": {
                "name": "my.library",
                "version": "1.0.0",
                "attributes": [
                  { "key": "my.scope.attribute", "value": { "stringValue": "some scope attribute" } }
                ]
              },
              "spans": [
                {
                  "traceId": "5B8EFFF798038103D269B633813FC60C",
                  "spanId": "EEE19B7EC3C1B174",
                  "parentSpanId": "EEE19B7EC3C1B173",
                  "name": "I'm a server span",
                  "startTimeUnixNano": "1544712660000000000",
                  "endTimeUnixNano": "1544712661000000000",
                  "kind": 2,
                  "attributes": [
                    { "key": "my.span.attr", "value": { "stringValue": "some value" } }
                  ]
                }
              ]
            }
          ]
        }
      ]
    }"#;

/// `examples/logs.json` of the OTLP repository.
const SPEC_LOGS: &str = r#"{
      "resourceLogs": [
        {
          "resource": {
            "attributes": [
              { "key": "service.name", "value": { "stringValue": "my.service" } }
            ]
          },
          "scopeLogs": [
            {
              "scope": {
                "name": "my.library",
                "version": "1.0.0",
                "attributes": [
                  { "key": "my.scope.attribute", "value": { "stringValue": "some scope attribute" } }
                ]
              },
              "logRecords": [
                {
                  "timeUnixNano": "1544712660300000000",
                  "observedTimeUnixNano": "1544712660300000000",
                  "severityNumber": 10,
                  "severityText": "Information",
                  "traceId": "5B8EFFF798038103D269B633813FC60C",
                  "spanId": "EEE19B7EC3C1B174",
                  "body": { "stringValue": "Example log record" },
                  "attributes": [
                    { "key": "string.attribute", "value": { "stringValue": "some string" } },
                    { "key": "boolean.attribute", "value": { "boolValue": true } },
                    { "key": "int.attribute", "value": { "intValue": "10" } },
                    { "key": "double.attribute", "value": { "doubleValue": 637.704 } },
                    {
                      "key": "array.attribute",
                      "value": {
                        "arrayValue": {
                          "values": [ { "stringValue": "many" }, { "stringValue": "values" } ]
                        }
                      }
                    },
                    {
                      "key": "map.attribute",
                      "value": {
                        "kvlistValue": {
                          "values": [
                            { "key": "some.map.key", "value": { "stringValue": "some value" } }
                          ]
                        }
                      }
                    }
                  ]
                }
              ]
            }
          ]
        }
      ]
    }"#;

/// `examples/events.json` of the OTLP repository (the log record part).
const SPEC_EVENTS: &str = r#"{
      "resourceLogs": [ { "scopeLogs": [ { "logRecords": [ {
        "eventName": "browser.page_view",
        "timeUnixNano": "1544712660300000000",
        "observedTimeUnixNano": "1544712660300000000",
        "severityNumber": 9,
        "severityText": "test severity text",
        "attributes": [ { "key": "event.attribute", "value": { "stringValue": "some event attribute" } } ],
        "body": { "kvlistValue": { "values": [
          { "key": "type", "value": { "intValue": "0" } },
          { "key": "url", "value": { "stringValue": "https://www.guidgenerator.com/online-guid-generator.aspx" } },
          { "key": "referrer", "value": { "stringValue": "https://wwww.google.com" } },
          { "key": "title", "value": { "stringValue": "Free Online GUID Generator" } }
        ] } }
      } ] } ] } ]
    }"#;

#[test]
fn spec_trace_example() {
    let d = traces(SPEC_TRACE);
    assert_eq!((d.accepted, d.rejected.count()), (1, 0));
    assert_eq!(d.sanitised, Sanitised::default());
    let b = &d.batches[0];
    assert_eq!(
        crate::domain::service_name(&b.resource.attributes),
        "my.service"
    );
    assert_eq!(b.scope.name, "my.library");
    assert_eq!(b.scope.version, "1.0.0");
    assert_eq!(
        b.scope.attributes,
        [kv("my.scope.attribute", s("some scope attribute"))]
    );
    let span = &b.spans[0];
    assert_eq!(
        span.trace_id,
        TraceId([
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ])
    );
    assert_eq!(
        span.span_id,
        SpanId([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74])
    );
    assert_eq!(
        span.parent_span_id,
        Some(SpanId([0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]))
    );
    assert_eq!(span.name, "I'm a server span");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.attributes, [kv("my.span.attr", s("some value"))]);
    assert_eq!(span.status, Status::default());
    // Strings without escapes borrow from the body.
    assert!(matches!(span.name, Cow::Borrowed(_)));
}

#[test]
fn spec_logs_example() {
    let d = logs(SPEC_LOGS);
    assert_eq!((d.accepted, d.rejected.count()), (1, 0));
    let log = &d.batches[0].logs[0];
    assert_eq!(log.time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(log.observed_time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(log.severity_number, 10);
    assert_eq!(log.severity_text, "Information");
    assert_eq!(
        log.trace_id,
        TraceId::from_hex("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(
        log.span_id.map(|id| id.to_hex()).as_deref(),
        Some("eee19b7ec3c1b174")
    );
    assert_eq!(log.body, s("Example log record"));
    assert_eq!(
        log.attributes,
        [
            kv("string.attribute", s("some string")),
            kv("boolean.attribute", AnyValue::Bool(true)),
            kv("int.attribute", AnyValue::Int(10)),
            kv("double.attribute", AnyValue::Double(637.704)),
            kv(
                "array.attribute",
                AnyValue::Array(vec![s("many"), s("values")])
            ),
            kv(
                "map.attribute",
                AnyValue::KvList(vec![kv("some.map.key", s("some value"))])
            ),
        ]
    );
}

#[test]
fn spec_events_example() {
    let d = logs(SPEC_EVENTS);
    let log = &d.batches[0].logs[0];
    assert_eq!(log.event_name, "browser.page_view");
    assert_eq!((log.trace_id, log.span_id), (None, None));
    let AnyValue::KvList(body) = &log.body else {
        panic!("body is {:?}", log.body)
    };
    assert_eq!(body[0], kv("type", AnyValue::Int(0)));
    assert_eq!(body.len(), 4);
    assert_eq!(d.batches[0].resource, Resource::default());
}

#[test]
fn integers_as_strings_or_numbers() {
    for (json, want) in [
        (r#"{"intValue":"10"}"#, 10),
        (r#"{"intValue":10}"#, 10),
        (r#"{"intValue":-7}"#, -7),
        (r#"{"intValue":"-7"}"#, -7),
        (r#"{"intValue":"1e3"}"#, 1000),
        (r#"{"intValue":1e3}"#, 1000),
        (r#"{"intValue":"10.0"}"#, 10),
        (r#"{"intValue":"9223372036854775807"}"#, i64::MAX),
        (r#"{"intValue":-9223372036854775808}"#, i64::MIN),
    ] {
        assert_eq!(attr_value(json).unwrap(), AnyValue::Int(want), "{json}");
    }
    for bad in [
        r#"{"intValue":"9223372036854775808"}"#,
        r#"{"intValue":"1.5"}"#,
        r#"{"intValue":1.5}"#,
        r#"{"intValue":" 1"}"#,
        r#"{"intValue":"+1"}"#,
        r#"{"intValue":"0x10"}"#,
        r#"{"intValue":""}"#,
        r#"{"intValue":true}"#,
    ] {
        assert!(
            matches!(attr_value(bad), Err(DecodeError::Json(_))),
            "{bad} was accepted"
        );
    }

    let body = one_span(
        r#","startTimeUnixNano":1544712660000000000,"endTimeUnixNano":"18446744073709551615",
               "droppedAttributesCount":"3","flags":257"#,
    );
    let d = traces(&body);
    let span = &d.batches[0].spans[0];
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, u64::MAX);
    assert_eq!(span.dropped_attributes_count, 3);
    assert_eq!(span.flags, 257);

    for bad in [
        r#","startTimeUnixNano":-1"#,
        r#","startTimeUnixNano":"18446744073709551616""#,
        r#","droppedAttributesCount":4294967296"#,
        r#","flags":"x""#,
    ] {
        let msg = json_error(decode_traces_json(one_span(bad).as_bytes()));
        assert!(msg.contains("line"), "{msg}");
    }
}

#[test]
fn enums_are_integers() {
    let body = one_span(r#","kind":3,"status":{"code":2,"message":"boom"}"#);
    let d = traces(&body);
    let span = &d.batches[0].spans[0];
    assert_eq!(span.kind, 3);
    assert_eq!(span.status.code, crate::domain::STATUS_CODE_ERROR);
    assert_eq!(span.status.message, "boom");
    // Values outside the known ones are kept as sent, as protobuf does.
    let body = one_span(r#","kind":42"#);
    let d = traces(&body);
    assert_eq!(d.batches[0].spans[0].kind, 42);
    // Enum names are not OTLP JSON.
    let msg = json_error(decode_traces_json(
        one_span(r#","kind":"SPAN_KIND_SERVER""#).as_bytes(),
    ));
    assert!(msg.contains("enum"), "{msg}");
}

#[test]
fn doubles_including_non_finite() {
    assert_eq!(
        attr_value(r#"{"doubleValue":1.5}"#).unwrap(),
        AnyValue::Double(1.5)
    );
    assert_eq!(
        attr_value(r#"{"doubleValue":7}"#).unwrap(),
        AnyValue::Double(7.0)
    );
    assert_eq!(
        attr_value(r#"{"doubleValue":"2.5"}"#).unwrap(),
        AnyValue::Double(2.5)
    );
    assert_eq!(
        attr_value(r#"{"doubleValue":"Infinity"}"#).unwrap(),
        AnyValue::Double(f64::INFINITY)
    );
    assert_eq!(
        attr_value(r#"{"doubleValue":"-Infinity"}"#).unwrap(),
        AnyValue::Double(f64::NEG_INFINITY)
    );
    assert!(matches!(
        attr_value(r#"{"doubleValue":"NaN"}"#).unwrap(),
        AnyValue::Double(d) if d.is_nan()
    ));
    for bad in [
        r#"{"doubleValue":"inf"}"#,
        r#"{"doubleValue":"abc"}"#,
        r#"{"doubleValue":[]}"#,
    ] {
        assert!(
            matches!(attr_value(bad), Err(DecodeError::Json(_))),
            "{bad}"
        );
    }
}

#[test]
fn bytes_are_base64() {
    let want = AnyValue::Bytes(Cow::Owned(vec![0xfb, 0xff, 0x01]));
    assert_eq!(attr_value(r#"{"bytesValue":"+/8B"}"#).unwrap(), want);
    assert_eq!(attr_value(r#"{"bytesValue":"-_8B"}"#).unwrap(), want);
    let want = AnyValue::Bytes(Cow::Owned(b"hi".to_vec()));
    assert_eq!(attr_value(r#"{"bytesValue":"aGk="}"#).unwrap(), want);
    assert_eq!(attr_value(r#"{"bytesValue":"aGk"}"#).unwrap(), want);
    assert_eq!(
        attr_value(r#"{"bytesValue":""}"#).unwrap(),
        AnyValue::Bytes(Cow::Owned(vec![]))
    );
    let Err(DecodeError::Json(msg)) = attr_value(r#"{"bytesValue":"a*b"}"#) else {
        panic!("bad base64 accepted")
    };
    assert!(msg.contains("base64") && msg.contains("line"), "{msg}");
}

#[test]
fn any_value_members() {
    assert_eq!(attr_value("{}").unwrap(), AnyValue::Empty);
    assert_eq!(attr_value("null").unwrap(), AnyValue::Empty);
    assert_eq!(
        attr_value(r#"{"boolValue":false}"#).unwrap(),
        AnyValue::Bool(false)
    );
    assert_eq!(attr_value(r#"{"stringValue":""}"#).unwrap(), s(""));
    assert_eq!(
        attr_value(r#"{"arrayValue":{}}"#).unwrap(),
        AnyValue::Array(vec![])
    );
    assert_eq!(
        attr_value(r#"{"kvlistValue":{"values":null}}"#).unwrap(),
        AnyValue::KvList(vec![])
    );
    // A null member is absent; a null value is the empty value.
    assert_eq!(
        attr_value(r#"{"stringValue":null,"intValue":"5"}"#).unwrap(),
        AnyValue::Int(5)
    );
    assert_eq!(
        attr_value(r#"{"arrayValue":{"values":[null,{}]}}"#).unwrap(),
        AnyValue::Array(vec![AnyValue::Empty, AnyValue::Empty])
    );
    // A oneof holds one value.
    let Err(DecodeError::Json(msg)) = attr_value(r#"{"stringValue":"a","intValue":1}"#) else {
        panic!("two values accepted")
    };
    assert!(msg.contains("more than one"), "{msg}");
    // Escaped strings are unescaped (and owned).
    let v = attr_value(r#"{"stringValue":"a\"b\u00e9\n"}"#).unwrap();
    assert_eq!(v, s("a\"bé\n"));
}

#[test]
fn unknown_fields_are_ignored() {
    let body = r#"{
          "unknownTop": {"a": [1, 2, {"b": null}]},
          "resourceSpans": [{
            "resource": {"attributes": [], "entityRefs": [{"type": "service"}], "x": 1},
            "instrumentationLibrarySpans": [{"spans": [{"name": "legacy"}]}],
            "scopeSpans": [{
              "scope": {"name": "lib", "future": true},
              "spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174",
                "name": "n",
                "newField": {"deep": [[[[["x"]]]]]},
                "attributes": [{"key": "k", "keyStrindex": 3, "value": {"stringValue": "v", "other": 1}}],
                "status": {"code": 1, "deprecatedCode": 2}
              }]
            }]
          }]
        }"#;
    let d = traces(body);
    assert_eq!(d.accepted, 1);
    let span = &d.batches[0].spans[0];
    assert_eq!(span.name, "n");
    assert_eq!(span.attributes, [kv("k", s("v"))]);
    assert_eq!(span.status.code, 1);
    assert_eq!(d.batches[0].scope.name, "lib");
}

#[test]
fn snake_case_names_are_accepted() {
    let body = r#"{"resource_spans":[{
            "resource":{"attributes":[{"key":"service.name","value":{"string_value":"svc"}}],
                        "dropped_attributes_count":1},
            "schema_url":"https://r",
            "scope_spans":[{"scope":{"name":"lib","dropped_attributes_count":2},"schema_url":"https://s",
              "spans":[{
                "trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
                "parent_span_id":"eee19b7ec3c1b173","trace_state":"a=b",
                "start_time_unix_nano":"1","end_time_unix_nano":2,
                "dropped_attributes_count":3,"dropped_events_count":4,"dropped_links_count":5,
                "events":[{"time_unix_nano":"2","name":"e","dropped_attributes_count":6}],
                "links":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
                          "trace_state":"x=y","dropped_attributes_count":7,"flags":1}],
                "attributes":[{"key":"a","value":{"array_value":{"values":[{"int_value":"1"},
                  {"double_value":2.5},{"bool_value":true},{"bytes_value":"aGk="},
                  {"kvlist_value":{"values":[{"key":"b","value":{"string_value":"c"}}]}}]}}}]
              }]}]}]}"#;
    let d = traces(body);
    let b = &d.batches[0];
    assert_eq!(crate::domain::service_name(&b.resource.attributes), "svc");
    assert_eq!(b.resource.dropped_attributes_count, 1);
    assert_eq!(b.resource.schema_url, "https://r");
    assert_eq!(b.scope.schema_url, "https://s");
    assert_eq!(b.scope.dropped_attributes_count, 2);
    let span = &b.spans[0];
    assert!(span.parent_span_id.is_some());
    assert_eq!(span.trace_state, "a=b");
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1, 2));
    assert_eq!(
        (
            span.dropped_attributes_count,
            span.dropped_events_count,
            span.dropped_links_count
        ),
        (3, 4, 5)
    );
    assert_eq!(span.events[0].time_unix_nano, 2);
    assert_eq!(span.events[0].dropped_attributes_count, 6);
    assert_eq!(span.links[0].trace_state, "x=y");
    assert_eq!(span.links[0].dropped_attributes_count, 7);
    assert_eq!(
        span.attributes[0].value,
        AnyValue::Array(vec![
            AnyValue::Int(1),
            AnyValue::Double(2.5),
            AnyValue::Bool(true),
            AnyValue::Bytes(Cow::Owned(b"hi".to_vec())),
            AnyValue::KvList(vec![kv("b", s("c"))]),
        ])
    );

    let d = logs(
        r#"{"resource_logs":[{"scope_logs":[{"log_records":[{
                "time_unix_nano":"5","observed_time_unix_nano":6,"severity_number":9,
                "severity_text":"INFO","event_name":"ev","trace_id":"5b8efff798038103d269b633813fc60c",
                "span_id":"eee19b7ec3c1b174","dropped_attributes_count":1}]}]}]}"#,
    );
    let log = &d.batches[0].logs[0];
    assert_eq!((log.time_unix_nano, log.observed_time_unix_nano), (5, 6));
    assert_eq!(
        (log.severity_number, log.severity_text.as_ref()),
        (9, "INFO")
    );
    assert_eq!(log.event_name, "ev");
    assert!(log.trace_id.is_some() && log.span_id.is_some());
    assert_eq!(log.dropped_attributes_count, 1);
    // The same field under both names is a duplicate, as in protobuf JSON.
    assert!(decode_logs_json(br#"{"resourceLogs":[],"resource_logs":[]}"#).is_err());
}

#[test]
fn null_is_absent() {
    let body = one_span(
        r#","name":null,"kind":null,"startTimeUnixNano":null,"attributes":null,
               "events":null,"links":null,"status":null,"parentSpanId":null,"traceState":null"#,
    );
    let d = traces(&body);
    let span = &d.batches[0].spans[0];
    assert_eq!(span.name, "");
    assert_eq!(span.parent_span_id, None);
    assert!(span.attributes.is_empty() && span.events.is_empty() && span.links.is_empty());
    let d = traces(
        r#"{"resourceSpans":[{"resource":null,"schemaUrl":null,"scopeSpans":[{"scope":null,"spans":[
              {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#,
    );
    assert_eq!(d.accepted, 1);
    assert_eq!(traces(r#"{"resourceSpans":null}"#).batches.len(), 0);
    assert_eq!(traces("{}").batches.len(), 0);
    let d =
        logs(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":null,"traceId":null}]}]}]}"#);
    assert_eq!(d.batches[0].logs[0].body, AnyValue::Empty);
    assert_eq!(d.batches[0].logs[0].trace_id, None);
}

#[test]
fn bad_ids_reject_the_item_and_keep_the_rest() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc6zz","spanId":"eee19b7ec3c1b174","name":"nothex"},
            {"traceId":"5B8EFFF798038103d269b633813fc60c","spanId":"EEE19B7EC3C1B174","name":"ok"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b","name":"short"},
            {"traceId":"","spanId":"eee19b7ec3c1b174","name":"empty"},
            {"traceId":"00000000000000000000000000000000","spanId":"eee19b7ec3c1b174","name":"zero"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"abc","name":"odd"},
            {"traceId":"5b8efff798038103d269b633813fc60c00","spanId":"eee19b7ec3c1b174","name":"long"},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"badlink",
             "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"x"}]},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"shortlink",
             "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":""}]},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"backwards",
             "startTimeUnixNano":"2","endTimeUnixNano":"1"}
        ]}]}]}"#;
    let d = traces(body);
    assert_eq!(d.accepted, 1);
    assert_eq!(d.batches[0].spans[0].name, "ok");
    assert_eq!(d.rejected.count(), 9);
    // Each by the id it concerns, whether it is not hex or has the wrong length or is zero.
    let by = |r: RejectReason| d.rejected.count_of(r);
    assert_eq!(by(RejectReason::TraceId), 4, "nothex, empty, zero, long");
    assert_eq!(by(RejectReason::SpanId), 1, "short");
    assert_eq!(by(RejectReason::ParentSpanId), 1, "odd");
    assert_eq!(by(RejectReason::Link), 2, "badlink, shortlink");
    assert_eq!(by(RejectReason::EndBeforeStart), 1, "backwards");
    let first = d.rejected.first.unwrap();
    assert!(first.starts_with("trace id is not a hex string"), "{first}");

    let d = traces(
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
             "links":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b1"}]}]}]}]}"#,
    );
    assert_eq!(d.rejected.first, Some(Invalid::LinkIdLength.to_string()));
    assert!(d.batches.is_empty(), "a batch left empty is not pushed");

    let d = logs(
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
            {"traceId":"xyz","body":{"stringValue":"a"}},
            {"spanId":"eee19b7ec3c1b1","body":{"stringValue":"b"}},
            {"traceId":"00000000000000000000000000000000","spanId":"0000000000000000","body":{"stringValue":"c"}}
        ]}]}]}"#,
    );
    assert_eq!((d.accepted, d.rejected.count()), (1, 2));
    assert_eq!(d.rejected.count_of(RejectReason::TraceId), 1, "not hex");
    assert_eq!(d.rejected.count_of(RejectReason::SpanId), 1, "short");
    assert_eq!(d.batches[0].logs[0].body, s("c"));
    assert_eq!(
        d.batches[0].logs[0].trace_id, None,
        "zero log ids are no trace context"
    );
    assert_eq!(
        d.rejected.first.as_deref(),
        Some("log trace id is not a hex string (Odd number of digits)")
    );
}

#[test]
fn one_batch_per_scope_with_the_resource_cloned() {
    let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#;
    let bad = r#"{"traceId":"","spanId":"eee19b7ec3c1b174"}"#;
    let body = format!(
        r#"{{"resourceSpans":[
              {{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"a"}}}}]}},
               "schemaUrl":"https://ra",
               "scopeSpans":[
                 {{"scope":{{"name":"s1"}},"schemaUrl":"https://s1","spans":[{span},{span}]}},
                 {{"scope":{{"name":"empty"}},"spans":[{bad}]}},
                 {{"scope":{{"name":"none"}}}},
                 {{"scope":{{"name":"s2"}},"spans":[{span}]}}]}},
              {{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"b"}}}}]}},
               "scopeSpans":[{{"spans":[{span}]}}]}}
            ]}}"#
    );
    let d = traces(&body);
    assert_eq!((d.accepted, d.rejected.count()), (4, 1));
    let names: Vec<_> = d.batches.iter().map(|b| b.scope.name.as_ref()).collect();
    assert_eq!(names, ["s1", "s2", ""]);
    let services: Vec<_> = d
        .batches
        .iter()
        .map(|b| crate::domain::service_name(&b.resource.attributes))
        .collect();
    assert_eq!(services, ["a", "a", "b"]);
    assert_eq!(d.batches[0].resource, d.batches[1].resource);
    assert_eq!(d.batches[0].resource.schema_url, "https://ra");
    assert_eq!(d.batches[0].scope.schema_url, "https://s1");
    assert_eq!(d.batches[1].scope.schema_url, "");
    assert_eq!(d.batches[0].spans.len(), 2);
}

#[test]
fn sanitising_is_applied_and_counted_once_per_resource() {
    let long = "x".repeat(crate::limits::VALUE_BYTES_MAX + 10);
    let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}"#;
    let attrs: Vec<String> = (0..crate::limits::ATTRIBUTES_COUNT_MAX + 2)
        .map(|i| format!(r#"{{"key":"k{i}","value":{{"intValue":{i}}}}}"#))
        .collect();
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"long","value":{{"stringValue":"{long}"}}}}]}},
                "scopeSpans":[{{"scope":{{"name":"a"}},"spans":[{span}]}},{{"scope":{{"name":"b"}},"spans":[{span}]}}]}},
              {{"resource":{{"attributes":[{{"key":"never","value":{{"stringValue":"{long}"}}}}]}},
                "scopeSpans":[{{"spans":[{{"traceId":""}}]}}]}},
              {{"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c",
                "spanId":"eee19b7ec3c1b174","attributes":[{}]}}]}}]}}]}}"#,
        attrs.join(",")
    );
    let d = traces(&body);
    assert_eq!((d.accepted, d.rejected.count()), (3, 1));
    // The first resource is truncated once although two batches carry it; the resource
    // of no batch is not looked at.
    assert_eq!(d.sanitised.truncated_values, 1);
    assert_eq!(d.sanitised.dropped_attributes, 2);
    let AnyValue::String(v) = &d.batches[0].resource.attributes[0].value else {
        panic!()
    };
    assert_eq!(v.len(), crate::limits::VALUE_BYTES_MAX);
    assert!(matches!(v, Cow::Borrowed(_)));
    assert_eq!(d.batches[0].resource, d.batches[1].resource);
    let span = &d.batches[2].spans[0];
    assert_eq!(span.attributes.len(), crate::limits::ATTRIBUTES_COUNT_MAX);
    assert_eq!(span.dropped_attributes_count, 2);
}

/// What opentelemetry-proto's serde mapping writes (what the integration tests post) is
/// read to the same values.
#[test]
fn reads_what_opentelemetry_proto_writes() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1 as pc;
    use opentelemetry_proto::tonic::logs::v1 as pl;
    use opentelemetry_proto::tonic::resource::v1 as pr;
    use opentelemetry_proto::tonic::trace::v1 as pt;
    use pc::any_value::Value as V;

    fn pkv(key: &str, value: V) -> pc::KeyValue {
        pc::KeyValue {
            key: key.into(),
            value: Some(pc::AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }
    let attributes = vec![
        pkv("s", V::StringValue("a\"b\n".into())),
        pkv("b", V::BoolValue(true)),
        pkv("i", V::IntValue(-42)),
        pkv("d", V::DoubleValue(2.5)),
        pkv("y", V::BytesValue(vec![0, 1, 254, 255])),
        pkv(
            "a",
            V::ArrayValue(pc::ArrayValue {
                values: vec![pc::AnyValue {
                    value: Some(V::IntValue(i64::MAX)),
                }],
            }),
        ),
        pkv(
            "m",
            V::KvlistValue(pc::KeyValueList {
                values: vec![pkv("inner", V::BoolValue(false))],
            }),
        ),
    ];
    let resource = Some(pr::Resource {
        attributes: vec![pkv("service.name", V::StringValue("svc".into()))],
        dropped_attributes_count: 1,
        ..Default::default()
    });
    let scope = Some(pc::InstrumentationScope {
        name: "lib".into(),
        version: "2".into(),
        ..Default::default()
    });
    let request = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: resource.clone(),
            scope_spans: vec![pt::ScopeSpans {
                scope: scope.clone(),
                spans: vec![pt::Span {
                    trace_id: vec![0x5b; 16],
                    span_id: vec![0xee; 8],
                    parent_span_id: vec![0xef; 8],
                    trace_state: "k=v".into(),
                    flags: 0x301,
                    name: "GET /".into(),
                    kind: 3,
                    start_time_unix_nano: 1_544_712_660_000_000_000,
                    end_time_unix_nano: u64::MAX,
                    attributes: attributes.clone(),
                    dropped_attributes_count: 2,
                    events: vec![pt::span::Event {
                        time_unix_nano: 5,
                        name: "ev".into(),
                        attributes: attributes.clone(),
                        dropped_attributes_count: 3,
                    }],
                    dropped_events_count: 4,
                    links: vec![pt::span::Link {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        trace_state: "x=y".into(),
                        attributes: vec![],
                        dropped_attributes_count: 5,
                        flags: 1,
                    }],
                    dropped_links_count: 6,
                    status: Some(pt::Status {
                        message: "bad".into(),
                        code: 2,
                    }),
                }],
                schema_url: "https://s".into(),
            }],
            schema_url: "https://r".into(),
        }],
    };
    let json = serde_json::to_string(&request).unwrap();
    let d = traces(&json);
    assert_eq!((d.accepted, d.rejected.count()), (1, 0), "{json}");
    let b = &d.batches[0];
    assert_eq!(b.resource.schema_url, "https://r");
    assert_eq!(b.resource.dropped_attributes_count, 1);
    assert_eq!(crate::domain::service_name(&b.resource.attributes), "svc");
    assert_eq!(
        (b.scope.name.as_ref(), b.scope.version.as_ref()),
        ("lib", "2")
    );
    assert_eq!(b.scope.schema_url, "https://s");
    let want_attrs = vec![
        kv("s", s("a\"b\n")),
        kv("b", AnyValue::Bool(true)),
        kv("i", AnyValue::Int(-42)),
        kv("d", AnyValue::Double(2.5)),
        kv("y", AnyValue::Bytes(Cow::Owned(vec![0, 1, 254, 255]))),
        kv("a", AnyValue::Array(vec![AnyValue::Int(i64::MAX)])),
        kv(
            "m",
            AnyValue::KvList(vec![kv("inner", AnyValue::Bool(false))]),
        ),
    ];
    let want = Span {
        trace_id: TraceId([0x5b; 16]),
        span_id: SpanId([0xee; 8]),
        trace_state: Cow::Borrowed("k=v"),
        parent_span_id: Some(SpanId([0xef; 8])),
        flags: 0x301,
        name: Cow::Borrowed("GET /"),
        kind: 3,
        start_time_unix_nano: 1_544_712_660_000_000_000,
        end_time_unix_nano: u64::MAX,
        attributes: want_attrs.clone(),
        dropped_attributes_count: 2,
        events: vec![Event {
            time_unix_nano: 5,
            name: Cow::Borrowed("ev"),
            attributes: want_attrs.clone(),
            dropped_attributes_count: 3,
        }],
        dropped_events_count: 4,
        links: vec![Link {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            trace_state: Cow::Borrowed("x=y"),
            attributes: vec![],
            dropped_attributes_count: 5,
            flags: 1,
        }],
        dropped_links_count: 6,
        status: Status {
            message: Cow::Borrowed("bad"),
            code: 2,
        },
    };
    assert_eq!(b.spans, [want]);

    let request = ExportLogsServiceRequest {
        resource_logs: vec![pl::ResourceLogs {
            resource,
            scope_logs: vec![pl::ScopeLogs {
                scope,
                log_records: vec![pl::LogRecord {
                    time_unix_nano: 7,
                    observed_time_unix_nano: 8,
                    severity_number: 17,
                    severity_text: "ERROR".into(),
                    body: Some(pc::AnyValue {
                        value: Some(V::StringValue("boom".into())),
                    }),
                    attributes: attributes.clone(),
                    dropped_attributes_count: 9,
                    flags: 1,
                    trace_id: vec![0x5b; 16],
                    span_id: vec![0xee; 8],
                    event_name: "e".into(),
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let json = serde_json::to_string(&request).unwrap();
    let d = logs(&json);
    let want = LogRecord {
        time_unix_nano: 7,
        observed_time_unix_nano: 8,
        severity_number: 17,
        severity_text: Cow::Borrowed("ERROR"),
        body: s("boom"),
        attributes: want_attrs,
        dropped_attributes_count: 9,
        flags: 1,
        trace_id: Some(TraceId([0x5b; 16])),
        span_id: Some(SpanId([0xee; 8])),
        event_name: Cow::Borrowed("e"),
    };
    assert_eq!(d.batches[0].logs, [want], "{json}");
}

#[test]
fn syntax_and_type_errors_carry_the_position() {
    let msg = json_error(decode_traces_json(b"{\"resourceSpans\": [\n  {]}"));
    assert!(msg.contains("line 2 column"), "{msg}");
    for bad in [
        &b""[..],
        b"[]",
        b"null",
        b"{\"resourceSpans\": {}}",
        b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"name\": 5}]}]}]}",
        b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"traceId\": 5}]}]}]}",
        b"{\"resourceSpans\": []} trailing",
        b"{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"name\": \"\xff\"}]}]}]}",
    ] {
        let msg = json_error(decode_traces_json(bad));
        assert!(msg.contains("line 1 column"), "{msg}");
    }
    let Err(DecodeError::Json(msg)) = decode_logs_json(b"{\"resourceLogs\":[{\"scopeLogs\":5}]}")
    else {
        panic!("accepted")
    };
    assert!(msg.ends_with("line 1 column 31"), "{msg}");
}

/// A one-span request with an attribute nested `depth` arrays deep.
fn nested_request(depth: usize) -> String {
    let v = format!(
        r#"{}{{"intValue":"1"}}{}"#,
        r#"{"arrayValue":{"values":["#.repeat(depth),
        "]}}".repeat(depth)
    );
    one_span(&format!(r#","attributes":[{{"key":"deep","value":{v}}}]"#))
}

#[test]
fn deep_nesting_is_bounded() {
    // On a small stack (what a busy shard might have left), every depth either decodes or
    // stops at serde_json's recursion limit; none overflows.
    let result = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(|| {
            let mut deepest_ok = 0;
            for depth in 0..60 {
                match decode_traces_json(nested_request(depth).as_bytes()) {
                    Ok(d) => {
                        assert_eq!(depth, deepest_ok + usize::from(depth > 0));
                        deepest_ok = depth;
                        // Validation flattens what is deeper than the limit, and counts it.
                        let flattened = d.sanitised.flattened_values;
                        assert_eq!(flattened, u64::from(depth >= VALUE_DEPTH_MAX));
                    }
                    Err(DecodeError::Json(msg)) => {
                        assert!(msg.contains("recursion limit"), "{msg}");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            deepest_ok
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    assert!(result > 30, "only {result} levels decode");

    // Far deeper: an error, not a crash; and unknown fields are skipped without recursion.
    let deep = nested_request(100_000);
    let msg = json_error(decode_traces_json(deep.as_bytes()));
    assert!(msg.contains("recursion limit"), "{msg}");
    let ignored = one_span(&format!(
        r#","future":{}1{}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    ));
    assert_eq!(traces(&ignored).accepted, 1);
}

#[test]
fn integer_strings_parse_exactly() {
    for (s, want) in [
        ("0", Some(0)),
        ("-0", Some(0)),
        ("18446744073709551615", Some(u64::MAX.into())),
        ("1.8446744073709551615e19", Some(u64::MAX.into())),
        ("-9223372036854775808", Some(i64::MIN.into())),
        ("1e0", Some(1)),
        ("1E+2", Some(100)),
        ("12300e-2", Some(123)),
        ("0.0e99999999999", Some(0)),
        ("1.25e2", Some(125)),
        ("1.25e1", None),
        ("1e99999999999", None),
        ("1e-1", None),
        ("01", None),
        ("1.", None),
        (".1", None),
        ("1e", None),
        ("-", None),
        ("", None),
        ("1 ", None),
        ("123456789012345678901", None),
    ] {
        assert_eq!(parse_int_str(s), want, "{s:?}");
    }
}

// ---- Memory budget.

/// `item` `n` times, comma-separated.
fn repeated(item: &str, n: usize) -> String {
    let mut out = String::with_capacity((item.len() + 1) * n);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out
}

fn too_large<T: std::fmt::Debug>(result: Result<Decoded<T>, DecodeError>) {
    match result {
        Err(DecodeError::TooLarge { max }) => assert_eq!(max, REQUEST_VALUES_BYTES_MAX),
        other => panic!("expected DecodeError::TooLarge, got {other:?}"),
    }
}

/// Ten million empty items: 30 MB of JSON that would take gigabytes as mirror structs, and
/// gigabytes more as domain values. Even at 32 bytes an item (an empty `AnyValue`) that is
/// past the budget.
const MANY: usize = 10_000_000;

#[test]
fn millions_of_empty_spans_or_logs_are_too_large() {
    let spans = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        repeated("{}", MANY)
    );
    too_large(decode_traces_json(spans.as_bytes()));
    let logs = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        repeated("{}", MANY)
    );
    too_large(decode_logs_json(logs.as_bytes()));
}

#[test]
fn millions_of_empty_attributes_or_values_are_too_large() {
    let many = repeated("{}", MANY);
    too_large(decode_traces_json(
        one_span(&format!(r#","attributes":[{many}]"#)).as_bytes(),
    ));
    too_large(decode_traces_json(
        one_span(&format!(
            r#","attributes":[{{"key":"k","value":{{"arrayValue":{{"values":[{many}]}}}}}}]"#
        ))
        .as_bytes(),
    ));
    let resource = format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{many}]}},"scopeLogs":[{{"logRecords":[{{}}]}}]}}]}}"#
    );
    too_large(decode_logs_json(resource.as_bytes()));
}

#[test]
fn many_small_items_within_the_budget_decode() {
    // 100 000 spans, invalid (no ids) but decoded and counted, then a span with a million
    // attributes, all under the budget.
    let spans = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        repeated("{}", 100_000)
    );
    let d = traces(&spans);
    assert_eq!((d.accepted, d.rejected.count()), (0, 100_000));
    let attrs = repeated(r#"{"key":"k"}"#, 1_000_000);
    let body = one_span(&format!(r#","attributes":[{attrs}]"#));
    let d = traces(&body);
    let span = &d.batches[0].spans[0];
    assert_eq!(span.attributes.len(), crate::limits::ATTRIBUTES_COUNT_MAX);
    assert_eq!(
        span.dropped_attributes_count as usize,
        1_000_000 - crate::limits::ATTRIBUTES_COUNT_MAX
    );
}

#[test]
fn the_budget_is_per_request_and_not_a_syntax_error() {
    let spans = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        repeated("{}", MANY)
    );
    too_large(decode_traces_json(spans.as_bytes()));
    // The next request has the whole budget again.
    let d = traces(SPEC_TRACE);
    assert_eq!(d.accepted, 1);
    // A malformed body after many items is a JSON error, with its position.
    let bad = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{},5]}}]}}]}}"#,
        repeated("{}", 100_000)
    );
    let msg = json_error(decode_traces_json(bad.as_bytes()));
    assert!(msg.contains("line 1 column"), "{msg}");
}

/// A resource of `ATTRIBUTES_COUNT_MAX` attributes, each an array of `VALUE_ELEMENTS_MAX` empty
/// values (about 4 MiB decoded), over `scopes` scopes of one valid span each.
fn big_resource_over_scopes(scopes: usize) -> String {
    let value = format!(
        r#"{{"arrayValue":{{"values":[{}]}}}}"#,
        repeated("{}", crate::limits::VALUE_ELEMENTS_MAX)
    );
    let attrs: Vec<String> = (0..crate::limits::ATTRIBUTES_COUNT_MAX)
        .map(|i| format!(r#"{{"key":"k{i}","value":{value}}}"#))
        .collect();
    let scope =
        r#"{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}"#;
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{}]}},"scopeSpans":[{}]}}]}}"#,
        attrs.join(","),
        repeated(scope, scopes)
    )
}

#[test]
fn copies_of_the_resource_for_each_scope_are_charged() {
    let body = big_resource_over_scopes(3);
    let d = traces(&body);
    assert_eq!(d.batches.len(), 3);
    assert!(d
        .batches
        .iter()
        .all(|b| b.resource == d.batches[0].resource));
    let AnyValue::Array(values) = &d.batches[2].resource.attributes[0].value else {
        panic!("not an array")
    };
    assert_eq!(values.len(), crate::limits::VALUE_ELEMENTS_MAX);
    // 200 copies of 4 MiB: past the budget, from a body of 400 KB.
    too_large(decode_traces_json(big_resource_over_scopes(200).as_bytes()));
}

mod round_trip {
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;

    use super::super::*;
    use crate::domain::{ArchivedLogBatch, ArchivedSpanBatch, SpanId, TraceId};
    use crate::otlp::json_out::tests::{logs_doc, traces_doc};

    fn text() -> impl Strategy<Value = Cow<'static, str>> {
        prop_oneof![
            "[a-z._/]{0,10}",
            vec(any::<char>(), 0..8).prop_map(String::from_iter),
            Just("\"\\\u{0}\u{1f}\u{7f}\u{2028}é😀".to_owned()),
        ]
        .prop_map(Cow::Owned)
    }

    /// Doubles serde_json reads back exactly without its `float_roundtrip` feature.
    fn double() -> impl Strategy<Value = f64> {
        prop_oneof![
            (any::<i32>(), 0..8i32).prop_map(|(m, e)| f64::from(m) / 10f64.powi(e)),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(637.704),
            Just(1e-7),
        ]
    }

    fn any_value() -> impl Strategy<Value = AnyValue<'static>> {
        let leaf = prop_oneof![
            Just(AnyValue::Empty),
            text().prop_map(AnyValue::String),
            any::<bool>().prop_map(AnyValue::Bool),
            any::<i64>().prop_map(AnyValue::Int),
            double().prop_map(AnyValue::Double),
            vec(any::<u8>(), 0..12).prop_map(|b| AnyValue::Bytes(Cow::Owned(b))),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(AnyValue::Array),
                attrs_of(inner).prop_map(AnyValue::KvList),
            ]
        })
    }

    fn attrs_of(
        value: impl Strategy<Value = AnyValue<'static>>,
    ) -> impl Strategy<Value = Vec<KeyValue<'static>>> {
        vec((text(), value), 0..4).prop_map(|kvs| {
            kvs.into_iter()
                .map(|(key, value)| KeyValue { key, value })
                .collect()
        })
    }

    fn attrs() -> impl Strategy<Value = Vec<KeyValue<'static>>> {
        attrs_of(any_value())
    }

    fn trace_id() -> impl Strategy<Value = TraceId> {
        any::<[u8; 16]>()
            .prop_filter("valid", |b| b != &[0; 16])
            .prop_map(TraceId)
    }

    fn span_id() -> impl Strategy<Value = SpanId> {
        any::<[u8; 8]>()
            .prop_filter("valid", |b| b != &[0; 8])
            .prop_map(SpanId)
    }

    fn resource() -> impl Strategy<Value = Resource<'static>> {
        (attrs(), any::<u32>(), text()).prop_map(|(attributes, dropped, schema_url)| Resource {
            attributes,
            dropped_attributes_count: dropped,
            schema_url,
        })
    }

    fn scope() -> impl Strategy<Value = Scope<'static>> {
        (text(), text(), attrs(), any::<u32>(), text()).prop_map(
            |(name, version, attributes, dropped, schema_url)| Scope {
                name,
                version,
                attributes,
                dropped_attributes_count: dropped,
                schema_url,
            },
        )
    }

    fn event() -> impl Strategy<Value = Event<'static>> {
        (any::<u64>(), text(), attrs(), any::<u32>()).prop_map(
            |(time_unix_nano, name, attributes, dropped)| Event {
                time_unix_nano,
                name,
                attributes,
                dropped_attributes_count: dropped,
            },
        )
    }

    fn link() -> impl Strategy<Value = Link<'static>> {
        // Zero ids are kept as sent in links.
        (
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            text(),
            attrs(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(|(t, s, trace_state, attributes, dropped, flags)| Link {
                trace_id: TraceId(t),
                span_id: SpanId(s),
                trace_state,
                attributes,
                dropped_attributes_count: dropped,
                flags,
            })
    }

    fn span() -> impl Strategy<Value = Span<'static>> {
        (
            (
                trace_id(),
                span_id(),
                text(),
                option::of(span_id()),
                any::<u32>(),
                text(),
            ),
            (
                any::<i32>(),
                any::<u64>(),
                any::<u64>(),
                attrs(),
                any::<u32>(),
            ),
            (
                vec(event(), 0..3),
                any::<u32>(),
                vec(link(), 0..3),
                any::<u32>(),
            ),
            (text(), prop_oneof![Just(0), Just(1), Just(2), any::<i32>()]),
        )
            .prop_map(
                |(
                    (trace_id, span_id, trace_state, parent_span_id, flags, name),
                    (kind, t1, t2, attributes, dropped_attributes_count),
                    (events, dropped_events_count, links, dropped_links_count),
                    (message, code),
                )| Span {
                    trace_id,
                    span_id,
                    trace_state,
                    parent_span_id,
                    flags,
                    name,
                    kind,
                    start_time_unix_nano: t1.min(t2),
                    end_time_unix_nano: t1.max(t2),
                    attributes,
                    dropped_attributes_count,
                    events,
                    dropped_events_count,
                    links,
                    dropped_links_count,
                    status: Status { message, code },
                },
            )
    }

    fn log() -> impl Strategy<Value = LogRecord<'static>> {
        (
            (
                any::<u64>(),
                any::<u64>(),
                any::<i32>(),
                text(),
                any_value(),
            ),
            (attrs(), any::<u32>(), any::<u32>()),
            (option::of(trace_id()), option::of(span_id()), text()),
        )
            .prop_map(
                |(
                    (time_unix_nano, observed_time_unix_nano, severity_number, severity_text, body),
                    (attributes, dropped_attributes_count, flags),
                    (trace_id, span_id, event_name),
                )| LogRecord {
                    time_unix_nano,
                    observed_time_unix_nano,
                    severity_number,
                    severity_text,
                    body,
                    attributes,
                    dropped_attributes_count,
                    flags,
                    trace_id,
                    span_id,
                    event_name,
                },
            )
    }

    fn span_batch() -> impl Strategy<Value = SpanBatch<'static>> {
        (resource(), scope(), vec(span(), 1..4)).prop_map(|(resource, scope, spans)| SpanBatch {
            resource,
            scope,
            spans,
        })
    }

    fn log_batch() -> impl Strategy<Value = LogBatch<'static>> {
        (resource(), scope(), vec(log(), 1..4)).prop_map(|(resource, scope, logs)| LogBatch {
            resource,
            scope,
            logs,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn spans_survive_archive_json_out_and_json_in(batches in vec(span_batch(), 1..3)) {
            let stored: Vec<_> = batches
                .iter()
                .map(|b| rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap())
                .collect();
            let archived: Vec<_> = stored
                .iter()
                .map(|bytes| rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(bytes).unwrap())
                .collect();
            let json = traces_doc(&archived);
            let decoded = decode_traces_json(json.as_bytes()).unwrap();
            prop_assert_eq!(decoded.rejected, Rejections::default());
            prop_assert_eq!(decoded.sanitised, Sanitised::default());
            let spans: usize = batches.iter().map(|b| b.spans.len()).sum();
            prop_assert_eq!(decoded.accepted, spans as u64);
            prop_assert_eq!(&decoded.batches, &batches);
        }

        #[test]
        fn logs_survive_archive_json_out_and_json_in(batches in vec(log_batch(), 1..3)) {
            let stored: Vec<_> = batches
                .iter()
                .map(|b| rkyv::to_bytes::<rkyv::rancor::Error>(b).unwrap())
                .collect();
            let archived: Vec<_> = stored
                .iter()
                .map(|bytes| rkyv::access::<ArchivedLogBatch<'static>, rkyv::rancor::Error>(bytes).unwrap())
                .collect();
            let json = logs_doc(&archived);
            let decoded = decode_logs_json(json.as_bytes()).unwrap();
            prop_assert_eq!(decoded.rejected, Rejections::default());
            prop_assert_eq!(decoded.sanitised, Sanitised::default());
            let logs: usize = batches.iter().map(|b| b.logs.len()).sum();
            prop_assert_eq!(decoded.accepted, logs as u64);
            prop_assert_eq!(&decoded.batches, &batches);
        }
    }
}
