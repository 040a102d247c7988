use std::borrow::Cow;

use proptest::prelude::*;

use super::*;
use crate::domain::{
    AnyValue, ArchivedSpanBatch, KeyValue, Resource, Scope, Span, SpanBatch, SpanId, Status,
    TraceId,
};

fn kv(key: &'static str, value: AnyValue<'static>) -> KeyValue<'static> {
    KeyValue {
        key: Cow::Borrowed(key),
        value,
    }
}

/// A span of `checkout` named `GET /cart`, a server span of 250 ms with status error and
/// message `boom`, with span attributes `http.status_code=500` (int), `ratio=0.5`,
/// `retry=true`, `user=ann`, and resource attributes `service.name`, `region=eu`.
fn batch() -> SpanBatch<'static> {
    SpanBatch {
        resource: Resource {
            attributes: vec![
                kv("service.name", AnyValue::String(Cow::Borrowed("checkout"))),
                kv("region", AnyValue::String(Cow::Borrowed("eu"))),
                kv("user", AnyValue::String(Cow::Borrowed("resource-user"))),
            ],
            ..Default::default()
        },
        scope: Scope::default(),
        spans: vec![Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            trace_state: Cow::Borrowed(""),
            parent_span_id: None,
            flags: 0,
            name: Cow::Borrowed("GET /cart"),
            kind: 2,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_250_000_000,
            attributes: vec![
                kv("http.status_code", AnyValue::Int(500)),
                kv("ratio", AnyValue::Double(0.5)),
                kv("retry", AnyValue::Bool(true)),
                kv("user", AnyValue::String(Cow::Borrowed("ann"))),
            ],
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links: vec![],
            dropped_links_count: 0,
            status: Status {
                message: Cow::Borrowed("boom"),
                code: 2,
            },
        }],
    }
}

/// Whether the sample span matches `q`'s span conditions (all of them, as a span query).
fn span_matches(q: &str) -> bool {
    let expr = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    let Some(expr) = expr else {
        return true;
    };
    let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&batch()).unwrap();
    let b = rkyv::access::<ArchivedSpanBatch<'static>, rkyv::rancor::Error>(&bytes).unwrap();
    expr.matches(SpanRef {
        span: &b.spans[0],
        resource: &b.resource,
    })
}

#[test]
fn intrinsics_compare_as_their_types() {
    for (q, want) in [
        ("{}", true),
        (r#"{name="GET /cart"}"#, true),
        (r#"{name="GET"}"#, false),
        (r#"{span:name!="x"}"#, true),
        (r#"{name=~"GET.*"}"#, true),
        (r#"{name=~"cart"}"#, false), // anchored
        (r#"{name!~"POST.*"}"#, true),
        ("{status=error}", true),
        ("{status!=error}", false),
        ("{status=ok}", false),
        ("{kind=server}", true),
        ("{span:kind=client}", false),
        ("{duration>200ms}", true),
        ("{duration>=250ms}", true),
        ("{duration>250ms}", false),
        ("{duration<1s}", true),
        ("{span:duration<=0.25s}", true),
        ("{duration=250000us}", true),
        (r#"{statusMessage="boom"}"#, true),
    ] {
        assert_eq!(span_matches(q), want, "{q}");
    }
}

#[test]
fn attributes_compare_by_scope_and_type() {
    for (q, want) in [
        ("{span.http.status_code=500}", true),
        ("{span.http.status_code>=400}", true),
        ("{span.http.status_code<500}", false),
        // An int attribute is not the string "500".
        (r#"{span.http.status_code="500"}"#, false),
        ("{span.http.status_code=500.0}", true),
        ("{span.ratio>0.25}", true),
        ("{span.ratio=0.5}", true),
        ("{span.retry=true}", true),
        ("{span.retry!=true}", false),
        ("{span.retry=1}", false),
        (r#"{resource.region="eu"}"#, true),
        (r#"{span.region="eu"}"#, false),
        (r#"{.region="eu"}"#, true),
        (r#"{resource.service.name="checkout"}"#, true),
        // Unscoped: the span's attribute hides its resource's.
        (r#"{.user="ann"}"#, true),
        (r#"{.user="resource-user"}"#, false),
        (r#"{resource.user="resource-user"}"#, true),
        // A missing attribute matches no operator, `!=` included.
        (r#"{span.absent!="x"}"#, false),
        (r#"{span.user=~"a.*"}"#, true),
        (r#"{span."user"="ann"}"#, true),
    ] {
        assert_eq!(span_matches(q), want, "{q}");
    }
}

#[test]
fn and_or_and_parentheses() {
    for (q, want) in [
        (r#"{name="GET /cart" && status=error}"#, true),
        (r#"{name="GET /cart" && status=ok}"#, false),
        (r#"{name="x" || status=error}"#, true),
        (r#"{(name="x" || name="GET /cart") && kind=server}"#, true),
        (
            r#"{(resource.service.name="a" || resource.service.name="b")}"#,
            false,
        ),
        (
            r#"{resource.service.name=~"a|checkout" && duration>100ms && duration<2s}"#,
            true,
        ),
        // `&&` binds tighter than `||`.
        (r#"{name="x" && kind=client || status=error}"#, true),
        (r#"{name="x" && (kind=client || status=error)}"#, false),
    ] {
        assert_eq!(span_matches(q), want, "{q}");
    }
}

#[test]
fn what_grafana_writes_parses() {
    for q in [
        r#"{resource.service.name="frontend" && name="GET /api" && status=error && duration>100ms && duration<2s && span.http.status_code=500}"#,
        r#"{resource.service.name=~"a|b" && traceDuration>1s}"#,
        r#"{ resource.service.name != "a" && resource.service.name != "b" }"#,
        "{span:status=unset && trace:duration<5m && trace:rootName=`GET /`}",
        r#"{rootServiceName="web" && trace:rootService="web"}"#,
        "{.http.method=`GET` && kind=consumer && duration>=1.5h}",
        "{ }",
        "{span.n=-3 && span.f=-0.5 && duration>10ns && duration>3µs}",
    ] {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    }
}

#[test]
fn what_is_outside_the_subset_is_named() {
    for (q, says) in [
        ("{name=\"a\"} | count() > 2", "pipelines"),
        ("{name=\"a\"} && {name=\"b\"}", "one spanset"),
        ("{name=\"a\"} >> {name=\"b\"}", "one spanset"),
        ("{event.name=\"a\"}", "scope event"),
        ("{foo=\"a\"}", "unknown field foo"),
        ("{name=3}", "not supported"),
        ("{status=\"error\"}", "not supported"),
        ("{status>error}", "not supported"),
        ("{duration=~\"1s\"}", "not supported"),
        ("{span.a=~\"(\"}", "bad regular expression"),
        ("{name=\"a\"", "expected && or || or }"),
        ("name=\"a\"", "starts with {"),
        ("{name=\"a}", "unterminated string"),
        ("{span.a=nil}", "nil"),
        ("{span.a=3x}", "malformed number"),
        ("{(name=\"a\"}", "expected )"),
    ] {
        let e = parse(q).expect_err(q);
        assert!(e.what.contains(says), "{q}: {e}");
    }
    let long = format!(
        "{{{}}}",
        vec!["name=\"a\""; TRACEQL_CONDITIONS_MAX + 1].join("&&")
    );
    assert!(parse(&long).unwrap_err().what.contains("conditions"));
}

#[test]
fn the_plan_moves_what_the_index_decides_into_plain_filters() {
    let mut s = TraceSearch::default();
    plan(
        r#"{resource.service.name="cart" && name="GET /" && duration>100ms && duration<=2s && status=error && span.http.status_code=500}"#,
        &mut s,
    )
    .unwrap();
    assert_eq!(s.service.as_deref(), Some("cart"));
    assert_eq!(s.name.as_deref(), Some("GET /"));
    assert_eq!(s.min_duration_nanos, Some(100_000_001));
    assert_eq!(s.max_duration_nanos, Some(2_000_000_000));
    assert_eq!(s.error, Some(true));
    // The equality is a needle, and stays a condition for its type and scope.
    assert_eq!(s.attrs, vec![("http.status_code".into(), "500".into())]);
    let sq = s.span_query.expect("the attribute condition stays");
    assert!(matches!(
        sq.expr,
        Expr::Cond(Cond {
            field: Field::Attr { .. },
            ..
        })
    ));
    assert!(s.trace_query.is_none());

    // Under `||`, nothing narrows: all of it is the span query.
    let mut s = TraceSearch::default();
    plan(r#"{name="a" || name="b"}"#, &mut s).unwrap();
    assert!(s.name.is_none() && s.span_query.is_some());

    // Trace conditions go apart; inside `||` they are refused.
    let mut s = TraceSearch::default();
    plan(
        r#"{traceDuration>1s && rootName="GET /" && kind=server}"#,
        &mut s,
    )
    .unwrap();
    assert_eq!(s.trace_query.as_ref().unwrap().conds.len(), 2);
    assert!(s.span_query.is_some());
    let mut s = TraceSearch::default();
    assert!(plan(r#"{traceDuration>1s || name="a"}"#, &mut s).is_err());

    let mut s = TraceSearch::default();
    plan("{}", &mut s).unwrap();
    assert_eq!(s, TraceSearch::default());
}

#[test]
fn trace_conditions_look_at_the_summary() {
    let mut s = TraceSearch::default();
    plan(
        r#"{traceDuration>=2s && rootServiceName="web" && rootName=~"GET.*"}"#,
        &mut s,
    )
    .unwrap();
    let tq = s.trace_query.unwrap();
    let mut t = TraceSummary::empty(&TraceId([1; 16]), 3);
    t.start_unix_nanos = 1_000_000_000;
    t.end_unix_nanos = 3_000_000_000;
    t.root_service_name = "web".into();
    t.root_span_name = "GET /".into();
    assert!(tq.matches(&t));
    t.end_unix_nanos = 2_999_999_999;
    assert!(!tq.matches(&t));
}

proptest! {
    /// No input makes the parser panic, and what it accepts is bounded.
    #[test]
    fn any_text_parses_or_is_refused(q in "\\PC{0,80}") {
        let _ = parse(&q);
    }

    /// Queries made of the subset's pieces parse.
    #[test]
    fn generated_queries_parse(
        terms in proptest::collection::vec(
            (0usize..6, 0usize..4, "[a-z]{1,6}"), 1..6),
        ors in proptest::collection::vec(any::<bool>(), 6),
    ) {
        let mut q = String::from("{");
        for (i, (field, op, word)) in terms.iter().enumerate() {
            if i > 0 {
                q.push_str(if ors[i] { " || " } else { " && " });
            }
            let field = ["name", "span.a", "resource.b", ".c", "statusMessage", "rootName"][*field];
            let op = ["=", "!=", "=~", "!~"][*op];
            q.push_str(&format!("{field}{op}\"{word}\""));
        }
        q.push('}');
        prop_assert!(parse(&q).is_ok(), "{}", q);
    }
}
