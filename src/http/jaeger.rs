//! Jaeger's query API under `/jaeger`, for Grafana's Jaeger data source and Jaeger UI behind a
//! reverse proxy: so far the services, their operations, and a trace by id.
//!
//! | route (under `/jaeger`)              | answer                                             |
//! |--------------------------------------|----------------------------------------------------|
//! | `GET /api/services`                  | `{"data":["svc",...],"total","limit","offset","errors"}` |
//! | `GET /api/services/{s}/operations`   | `{"data":["op",...],...}`                           |
//! | `GET /api/traces/{id}`               | `{"data":[trace],...}` in Jaeger's JSON; 404 `{"data":null,"errors":[{"code":404,"msg"}]}` |
//! | `GET /api/v3/services`               | `{"services":[...]}`                                |
//! | `GET /api/v3/operations?service=`    | `{"operations":[{"name","spanKind"}]}`              |
//! | `GET /api/v3/traces/{id}`            | `{"result":{"resourceSpans":[...]}}` (OTLP JSON); 404 `{"error":{"httpCode","message"}}` |
//!
//! A trace in Jaeger's JSON is made from its OTLP protobuf form the way Jaeger's own OTLP
//! translator does it: resources become processes, events logs, links `FOLLOWS_FROM`
//! references, and kind, status and scope become the tags `span.kind`, `otel.status_code`,
//! `error`, `otel.status_description`, `otel.scope.name` and `otel.scope.version`. Times are
//! microseconds. Unknown parameters are ignored, as Jaeger ignores them.

use std::rc::Rc;

use base64::Engine as _;
use http::StatusCode;
use hyper::Response;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message;
use serde_json::{json, Value};

use super::reply;
use super::tempo::padded_trace_id;
use super::Body;
use crate::otlp::proto_out::traces_data;
use crate::query::{params, QueryRequest, QueryResponse};
use crate::shard::query::{coordinate, render};
use crate::shard::Shard;

/// Answers `path`, what follows `/jaeger`.
pub async fn handle(shard: &Rc<Shard>, path: &str, query: Option<&str>) -> Response<Body> {
    match path {
        "/api/services" => match names(shard, QueryRequest::Services).await {
            Ok(s) => v1(json!(s), s.len()),
            Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e),
        },
        "/api/v3/services" => match names(shard, QueryRequest::Services).await {
            Ok(s) => reply::json(StatusCode::OK, json!({ "services": s }).to_string()),
            Err(e) => v3_error(StatusCode::SERVICE_UNAVAILABLE, &e),
        },
        "/api/v3/operations" => {
            let service = params::pairs(query)
                .into_iter()
                .find(|(k, _)| k == "service" || k == "query.service_name")
                .map(|(_, v)| v);
            let Some(service) = service else {
                return v3_error(StatusCode::BAD_REQUEST, "service is required");
            };
            match names(shard, QueryRequest::Operations(service)).await {
                // Glust does not keep span kinds per operation: the kind is left empty.
                Ok(ops) => {
                    let ops: Vec<Value> = ops
                        .iter()
                        .map(|n| json!({"name": n, "spanKind": ""}))
                        .collect();
                    reply::json(StatusCode::OK, json!({ "operations": ops }).to_string())
                }
                Err(e) => v3_error(StatusCode::SERVICE_UNAVAILABLE, &e),
            }
        }
        p => {
            if let Some(id) = p.strip_prefix("/api/v3/traces/") {
                return trace_v3(shard, id).await;
            }
            if let Some(id) = p.strip_prefix("/api/traces/") {
                return trace_v1(shard, id).await;
            }
            let operations = p
                .strip_prefix("/api/services/")
                .and_then(|rest| rest.strip_suffix("/operations"))
                .filter(|s| !s.is_empty() && !s.contains('/'));
            if let Some(service) = operations {
                let service = params::percent_decode_path(service);
                return match names(shard, QueryRequest::Operations(service)).await {
                    Ok(ops) => v1(json!(ops), ops.len()),
                    Err(e) => v1_error(StatusCode::SERVICE_UNAVAILABLE, &e),
                };
            }
            v1_error(
                StatusCode::NOT_FOUND,
                &format!("no such endpoint: /jaeger{p}"),
            )
        }
    }
}

/// A v1 answer: `data` and the envelope Jaeger's clients expect around it.
fn v1(data: Value, total: usize) -> Response<Body> {
    let doc = json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null});
    reply::json(StatusCode::OK, doc.to_string())
}

/// A v1 error, which Jaeger UI prints from `errors[].msg`.
fn v1_error(status: StatusCode, msg: &str) -> Response<Body> {
    let doc = json!({
        "data": null, "total": 0, "limit": 0, "offset": 0,
        "errors": [{"code": status.as_u16(), "msg": msg}],
    });
    reply::json(status, doc.to_string())
}

fn v3_error(status: StatusCode, msg: &str) -> Response<Body> {
    let doc = json!({"error": {"httpCode": status.as_u16(), "message": msg}});
    reply::json(status, doc.to_string())
}

/// The names a services or operations query answers, or why it could not (a 503's text).
async fn names(shard: &Rc<Shard>, q: QueryRequest) -> Result<Vec<String>, String> {
    match coordinate(shard, q).await {
        Ok(QueryResponse::Services(n) | QueryResponse::Operations(n)) => Ok(n),
        Ok(QueryResponse::Failed(why)) => Err(why.to_string()),
        Ok(_) => Err("no shard answered".into()),
        Err(e) => Err(e.to_string()),
    }
}

async fn trace_v3(shard: &Rc<Shard>, id: &str) -> Response<Body> {
    let Some(id) = padded_trace_id(id) else {
        return v3_error(StatusCode::BAD_REQUEST, "invalid trace id");
    };
    match coordinate(shard, QueryRequest::Trace(id)).await {
        Ok(QueryResponse::Trace(g)) if g.is_empty() => {
            v3_error(StatusCode::NOT_FOUND, "trace not found")
        }
        Ok(QueryResponse::Trace(g)) => {
            let trace = render(&g, "resourceSpans", "scopeSpans", "spans");
            reply::json(StatusCode::OK, format!("{{\"result\":{trace}}}"))
        }
        Ok(QueryResponse::Failed(why)) => {
            v3_error(StatusCode::SERVICE_UNAVAILABLE, &why.to_string())
        }
        Ok(_) => v3_error(StatusCode::SERVICE_UNAVAILABLE, "no shard answered"),
        Err(e) => v3_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

async fn trace_v1(shard: &Rc<Shard>, id: &str) -> Response<Body> {
    let Some(id) = padded_trace_id(id) else {
        return v1_error(StatusCode::BAD_REQUEST, "invalid trace id");
    };
    let groups = match coordinate(shard, QueryRequest::TraceProto(id)).await {
        Ok(QueryResponse::TraceProto(g)) => g,
        Ok(QueryResponse::Failed(why)) => {
            return v1_error(StatusCode::SERVICE_UNAVAILABLE, &why.to_string())
        }
        Ok(_) => return v1_error(StatusCode::SERVICE_UNAVAILABLE, "no shard answered"),
        Err(e) => return v1_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    if groups.is_empty() {
        return v1_error(StatusCode::NOT_FOUND, "trace not found");
    }
    let data = match TracesData::decode(traces_data(&groups).as_slice()) {
        Ok(d) => d,
        Err(e) => {
            return v1_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("stored trace does not decode: {e}"),
            )
        }
    };
    v1(json!([jaeger_trace(&id.to_hex(), &data)]), 1)
}

/// One trace in Jaeger's JSON (`uimodel.Trace`): its spans, and one process per resource.
pub fn jaeger_trace(trace_id: &str, data: &TracesData) -> Value {
    let mut spans = Vec::new();
    let mut processes = serde_json::Map::new();
    for (r, rs) in data.resource_spans.iter().enumerate() {
        let process_id = format!("p{}", r + 1);
        let attrs = rs.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let service = attrs
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                },
            )
            .unwrap_or_else(|| "unknown_service".to_owned());
        let tags: Vec<Value> = attrs
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(tag)
            .collect();
        processes.insert(
            process_id.clone(),
            json!({"serviceName": service, "tags": tags}),
        );
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let mut tags: Vec<Value> = s.attributes.iter().map(tag).collect();
                let kind = match s.kind {
                    1 => Some("internal"),
                    2 => Some("server"),
                    3 => Some("client"),
                    4 => Some("producer"),
                    5 => Some("consumer"),
                    _ => None,
                };
                if let Some(kind) = kind {
                    tags.push(string_tag("span.kind", kind));
                }
                if let Some(status) = &s.status {
                    match status.code {
                        1 => tags.push(string_tag("otel.status_code", "OK")),
                        2 => {
                            tags.push(string_tag("otel.status_code", "ERROR"));
                            tags.push(json!({"key": "error", "type": "bool", "value": true}));
                        }
                        _ => {}
                    }
                    if !status.message.is_empty() {
                        tags.push(string_tag("otel.status_description", &status.message));
                    }
                }
                if let Some(scope) = &ss.scope {
                    if !scope.name.is_empty() {
                        tags.push(string_tag("otel.scope.name", &scope.name));
                    }
                    if !scope.version.is_empty() {
                        tags.push(string_tag("otel.scope.version", &scope.version));
                    }
                }
                if !s.trace_state.is_empty() {
                    tags.push(string_tag("w3c.tracestate", &s.trace_state));
                }
                let mut references = Vec::new();
                if !s.parent_span_id.is_empty() {
                    references.push(json!({
                        "refType": "CHILD_OF",
                        "traceID": hex::encode(&s.trace_id),
                        "spanID": hex::encode(&s.parent_span_id),
                    }));
                }
                for l in &s.links {
                    references.push(json!({
                        "refType": "FOLLOWS_FROM",
                        "traceID": hex::encode(&l.trace_id),
                        "spanID": hex::encode(&l.span_id),
                    }));
                }
                let logs: Vec<Value> = s
                    .events
                    .iter()
                    .map(|e| {
                        let mut fields = vec![string_tag("event", &e.name)];
                        fields.extend(e.attributes.iter().map(tag));
                        json!({"timestamp": e.time_unix_nano / 1000, "fields": fields})
                    })
                    .collect();
                spans.push(json!({
                    "traceID": hex::encode(&s.trace_id),
                    "spanID": hex::encode(&s.span_id),
                    "operationName": s.name,
                    "references": references,
                    "startTime": s.start_time_unix_nano / 1000,
                    "duration": s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1000,
                    "flags": s.flags,
                    "tags": tags,
                    "logs": logs,
                    "processID": process_id,
                    "warnings": null,
                }));
            }
        }
    }
    json!({"traceID": trace_id, "spans": spans, "processes": processes, "warnings": null})
}

fn string_tag(key: &str, value: &str) -> Value {
    json!({"key": key, "type": "string", "value": value})
}

/// An attribute as a Jaeger tag: strings, booleans, int64 and float64 as they are, bytes as
/// base64 `binary`, arrays and maps as their OTLP JSON text (Jaeger has no nested tags).
fn tag(kv: &KeyValue) -> Value {
    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
    let (kind, value) = match v {
        Some(any_value::Value::StringValue(s)) => ("string", json!(s)),
        Some(any_value::Value::BoolValue(b)) => ("bool", json!(b)),
        Some(any_value::Value::IntValue(i)) => ("int64", json!(i)),
        Some(any_value::Value::DoubleValue(d)) => ("float64", json!(d)),
        Some(any_value::Value::BytesValue(b)) => (
            "binary",
            json!(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<Value> = a.values.iter().map(plain).collect();
            ("string", json!(Value::Array(items).to_string()))
        }
        Some(any_value::Value::KvlistValue(m)) => {
            let map: serde_json::Map<String, Value> = m
                .values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, plain)))
                .collect();
            ("string", json!(Value::Object(map).to_string()))
        }
        _ => ("string", json!("")),
    };
    json!({"key": kv.key, "type": kind, "value": value})
}

/// A value as plain JSON, for the text of a nested tag.
fn plain(v: &AnyValue) -> Value {
    match v.value.as_ref() {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::BytesValue(b)) => {
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(plain).collect()),
        Some(any_value::Value::KvlistValue(m)) => Value::Object(
            m.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, plain)))
                .collect(),
        ),
        _ => Value::Null,
    }
}
