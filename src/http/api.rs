//! The query API on the query port: JSON in, JSON out.
//!
//! | route                         | answer                                              |
//! |-------------------------------|-----------------------------------------------------|
//! | `GET /api/v1/traces/{id}`     | OTLP JSON `TracesData`; 404 unknown, 400 malformed  |
//! | `GET /api/v1/traces?...`      | `{"traces":[summary...]}`, newest first             |
//! | `GET /api/v1/logs?...`        | OTLP JSON `LogsData`, newest first                  |
//! | `GET /api/v1/services`        | `{"services":[...]}`                                |
//! | `GET /api/v1/services/{s}/operations` | `{"operations":[...]}`: span names of a service |
//! | `GET /api/v1/tags?...`        | `{"scopes":[{"name","tags":[...]}...]}`: attribute keys |
//! | `GET /api/v1/tags/{k}/values?...` | `{"values":[{"value","type","count"}...]}`, most frequent first |
//! | `GET /metrics`                | Prometheus text: counters, gauges, latency summaries |
//! | `GET /debug/hdr?metric=`      | one latency histogram as HdrHistogram `.hgrm` text  |
//! | `GET /healthz`                | 200 while the process runs                          |
//! | `GET /readyz`                 | 200 while serving, 503 once shutting down           |
//! | `GET /tempo/...`              | Tempo's API, for Grafana ([`super::tempo`])        |
//! | `GET /jaeger/...`             | Jaeger's API, for Grafana and Jaeger UI ([`super::jaeger`]) |

use std::rc::Rc;

use http::{Method, StatusCode};
use hyper::body::Incoming;
use hyper::{Request, Response};

use super::reply;
use super::Body;
use crate::domain::tags::TagScope;
use crate::metrics::{hgrm, Hist};
use crate::query::{params, QueryRequest, QueryResponse};
use crate::shard::query::{coordinate, metrics, render};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply::json_error(StatusCode::METHOD_NOT_ALLOWED, "the query API takes GET");
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let query = query.as_deref();
    if let Some(rest) = path.strip_prefix("/tempo") {
        return super::tempo::handle(shard, rest, query, req.headers()).await;
    }
    if let Some(rest) = path.strip_prefix("/jaeger") {
        return super::jaeger::handle(shard, rest, query).await;
    }
    match path.as_str() {
        "/healthz" => reply::with_body(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if shard.stopping.is_set() => reply::with_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n",
        ),
        "/readyz" => reply::with_body(StatusCode::OK, "text/plain", "ready\n"),
        "/api/v1/services" => run(shard, QueryRequest::Services).await,
        "/metrics" => run(shard, QueryRequest::Metrics).await,
        "/debug/hdr" => hdr(shard, query).await,
        "/api/v1/traces" => match params::trace_search(query) {
            Ok(s) => run(shard, QueryRequest::SearchTraces(s)).await,
            Err(e) => reply::json_error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        "/api/v1/tags" => match params::tags(query) {
            Ok(f) => {
                let asked = f.scopes;
                run_asking(shard, QueryRequest::Tags(f), asked).await
            }
            Err(e) => reply::json_error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        "/api/v1/logs" => match params::log_search(query) {
            Ok(s) => run(shard, QueryRequest::SearchLogs(s)).await,
            Err(e) => reply::json_error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        p => {
            if let Some(id) = p.strip_prefix("/api/v1/traces/") {
                return match params::trace_id("traceId", id) {
                    Ok(id) => run(shard, QueryRequest::Trace(id)).await,
                    Err(e) => reply::json_error(StatusCode::BAD_REQUEST, e.to_string()),
                };
            }
            let tag_key = p
                .strip_prefix("/api/v1/tags/")
                .and_then(|rest| rest.strip_suffix("/values"))
                .filter(|key| !key.is_empty());
            if let Some(key) = tag_key {
                let key = params::percent_decode_path(key);
                return match params::tag_values(query) {
                    Ok((filter, limit)) => {
                        run(shard, QueryRequest::TagValues { key, filter, limit }).await
                    }
                    Err(e) => reply::json_error(StatusCode::BAD_REQUEST, e.to_string()),
                };
            }
            let operations = p
                .strip_prefix("/api/v1/services/")
                .and_then(|rest| rest.strip_suffix("/operations"))
                .filter(|service| !service.is_empty() && !service.contains('/'));
            match operations {
                Some(service) => {
                    let service = params::percent_decode_path(service);
                    run(shard, QueryRequest::Operations(service)).await
                }
                None => reply::json_error(StatusCode::NOT_FOUND, format!("no such endpoint: {p}")),
            }
        }
    }
}

/// `GET /debug/hdr?metric=NAME[&unit=ms|us|ns|s]`: one merged histogram as `.hgrm` text.
async fn hdr(shard: &Rc<Shard>, query: Option<&str>) -> Response<Body> {
    let mut metric = None;
    let mut unit = ("ms", 1e6);
    for (k, v) in params::pairs(query) {
        match k.as_str() {
            "metric" => metric = Some(v),
            "unit" => {
                unit = match v.as_str() {
                    "s" => ("s", 1e9),
                    "ms" => ("ms", 1e6),
                    "us" => ("us", 1e3),
                    "ns" => ("ns", 1.0),
                    _ => {
                        return reply::json_error(
                            StatusCode::BAD_REQUEST,
                            "unit is s, ms, us or ns",
                        )
                    }
                }
            }
            other => {
                return reply::json_error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other}"),
                )
            }
        }
    }
    let names: Vec<&str> = Hist::ALL.iter().map(|h| h.name()).collect();
    let Some(h) = metric.as_deref().and_then(Hist::from_name) else {
        return reply::json_error(
            StatusCode::BAD_REQUEST,
            format!("metric must be one of: {}", names.join(", ")),
        );
    };
    match metrics(shard).await {
        Ok(s) => {
            let text = hgrm(s.hist(h).expect("every histogram is in a snapshot"), unit.1);
            reply::with_body(StatusCode::OK, "text/plain", text)
        }
        Err(e) => reply::json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// A tags answer: `{"scopes":[{"name":"resource","tags":[...]},...]}`, the scopes asked in
/// the order resource, span, log (both resources' keys merged), each scope's keys sorted.
fn tags_json(asked: [bool; 4], tags: Vec<(TagScope, String)>, truncated: bool) -> String {
    let mut scopes: Vec<(&str, Vec<String>)> = Vec::new();
    for scope in TagScope::ALL.into_iter().filter(|s| asked[*s as usize]) {
        if !scopes.iter().any(|(name, _)| *name == scope.name()) {
            scopes.push((scope.name(), Vec::new()));
        }
    }
    // `TagScope::ALL` lists a resource first, then spans, then logs: the order asked for.
    for (scope, key) in tags {
        if let Some((_, keys)) = scopes.iter_mut().find(|(name, _)| *name == scope.name()) {
            keys.push(key);
        }
    }
    let scopes: Vec<serde_json::Value> = scopes
        .into_iter()
        .map(|(name, mut tags)| {
            tags.sort_unstable();
            tags.dedup();
            serde_json::json!({ "name": name, "tags": tags })
        })
        .collect();
    let mut doc = serde_json::json!({ "scopes": scopes });
    if truncated {
        doc["truncated"] = true.into();
    }
    doc.to_string()
}

/// Prometheus' text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Runs `q` over the shards and answers with its result, rendered for the query API.
async fn run(shard: &Rc<Shard>, q: QueryRequest) -> Response<Body> {
    run_asking(shard, q, [true; 4]).await
}

/// [`run`], for a tags query asking for the scopes `asked` (by [`TagScope`] number): each is
/// in the answer, with no keys if none was seen.
async fn run_asking(shard: &Rc<Shard>, q: QueryRequest, asked: [bool; 4]) -> Response<Body> {
    let answer = match coordinate(shard, q).await {
        Ok(a) => a,
        Err(e) => return reply::json_error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match answer {
        QueryResponse::Trace(groups) if groups.is_empty() => {
            reply::json_error(StatusCode::NOT_FOUND, "trace not found")
        }
        QueryResponse::Trace(groups) => reply::json(
            StatusCode::OK,
            render(&groups, "resourceSpans", "scopeSpans", "spans"),
        ),
        QueryResponse::Traces { traces, partial } => {
            let mut doc = serde_json::json!({ "traces": traces });
            if partial {
                doc["partial"] = true.into();
            }
            reply::json(StatusCode::OK, doc.to_string())
        }
        QueryResponse::Logs { hits, partial } => {
            let groups: Vec<_> = hits.into_iter().map(|h| h.group).collect();
            let mut doc = render(&groups, "resourceLogs", "scopeLogs", "logRecords");
            if partial {
                debug_assert!(doc.ends_with('}'));
                doc.pop();
                doc.push_str(",\"partial\":true}");
            }
            reply::json(StatusCode::OK, doc)
        }
        QueryResponse::Services(s) => reply::json(
            StatusCode::OK,
            serde_json::json!({ "services": s }).to_string(),
        ),
        QueryResponse::Operations(names) => reply::json(
            StatusCode::OK,
            serde_json::json!({ "operations": names }).to_string(),
        ),
        QueryResponse::Tags { tags, truncated } => {
            reply::json(StatusCode::OK, tags_json(asked, tags, truncated))
        }
        QueryResponse::TagValues { values, truncated } => {
            let values: Vec<serde_json::Value> = values
                .iter()
                .map(
                    |(v, n)| serde_json::json!({ "value": v.text(), "type": v.kind(), "count": n }),
                )
                .collect();
            let mut doc = serde_json::json!({ "values": values });
            if truncated {
                doc["truncated"] = true.into();
            }
            reply::json(StatusCode::OK, doc.to_string())
        }
        QueryResponse::Failed(why) => {
            reply::json_error(StatusCode::SERVICE_UNAVAILABLE, why.to_string())
        }
        QueryResponse::TraceProto(_) => reply::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a protobuf trace answered a JSON query",
        ),
        QueryResponse::Metrics(s) => {
            reply::with_body(StatusCode::OK, METRICS_CONTENT_TYPE, s.prometheus())
        }
    }
}
