//! Parsing of query-string parameters: times, durations, severities, ids, limits. Every error
//! names the parameter and what was wrong, for a 400 answer.

use std::time::{Duration, UNIX_EPOCH};

use crate::domain::TraceId;
use crate::limits::TAG_VALUES_LIMIT_DEFAULT;
use crate::limits::{
    QUERY_LIMIT_DEFAULT, QUERY_LIMIT_MAX, SEARCH_ATTRS_MAX, SEARCH_SPSS_DEFAULT, SEARCH_SPSS_MAX,
    SEARCH_TIMEOUT_MAX,
};
use crate::query::{Budget, LogSearch, TagFilter, TraceSearch};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{param}`: {why}")]
pub struct ParamError {
    pub param: String,
    pub why: String,
}

fn err(param: &str, why: impl Into<String>) -> ParamError {
    ParamError {
        param: param.to_owned(),
        why: why.into(),
    }
}

/// A trace id in its 32-hex-digit form.
pub fn trace_id(param: &str, s: &str) -> Result<TraceId, ParamError> {
    if s.len() != 32 {
        return Err(err(
            param,
            format!("a trace id is 32 hex digits, got {} characters", s.len()),
        ));
    }
    let id = TraceId::from_hex(s).ok_or_else(|| err(param, "not hexadecimal"))?;
    if id.is_zero() {
        return Err(err(param, "the all-zero trace id is invalid"));
    }
    Ok(id)
}

/// A time: unix nanoseconds, or RFC 3339 (`2026-11-26T10:00:00Z`, `...+02:00`, fractions).
pub fn time(param: &str, s: &str) -> Result<u64, ParamError> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let (base, offset_secs) = split_offset(s);
    let t = humantime::parse_rfc3339_weak(base).map_err(|e| {
        err(
            param,
            format!("expected unix nanoseconds or an RFC 3339 time: {e}"),
        )
    })?;
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| err(param, "before 1970"))?
        .as_nanos() as i128
        - offset_secs as i128 * 1_000_000_000;
    u64::try_from(nanos).map_err(|_| err(param, "out of range"))
}

/// Splits an RFC 3339 zone suffix (`Z`, `+hh:mm`, `-hh:mm`) off; returns seconds east of UTC.
fn split_offset(s: &str) -> (&str, i64) {
    if let Some(base) = s.strip_suffix(['Z', 'z']) {
        return (base, 0);
    }
    if s.len() > 6 {
        let (base, zone) = s.split_at(s.len() - 6);
        let b = zone.as_bytes();
        if (b[0] == b'+' || b[0] == b'-') && b[3] == b':' {
            if let (Ok(h), Ok(m)) = (zone[1..3].parse::<i64>(), zone[4..6].parse::<i64>()) {
                let secs = h * 3600 + m * 60;
                return (base, if b[0] == b'-' { -secs } else { secs });
            }
        }
    }
    (s, 0)
}

/// A duration: `250ms`, `2s`, `1m30s`, `1.5s`, or bare nanoseconds.
pub fn duration(param: &str, s: &str) -> Result<u64, ParamError> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    if let Some(secs) = s.strip_suffix('s').and_then(|v| v.parse::<f64>().ok()) {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs).as_nanos() as u64);
        }
    }
    humantime::parse_duration(s)
        .map(|d| d.as_nanos() as u64)
        .map_err(|e| err(param, format!("expected a duration like 250ms or 2s: {e}")))
}

/// A severity: a number 1–24, or a name (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`,
/// optionally with a level digit 2–4, case-insensitive).
pub fn severity(param: &str, s: &str) -> Result<i32, ParamError> {
    if let Ok(n) = s.parse::<i32>() {
        if (0..=24).contains(&n) {
            return Ok(n);
        }
        return Err(err(param, "severity numbers go from 1 to 24"));
    }
    let upper = s.to_ascii_uppercase();
    let (name, level) = match upper.chars().last() {
        Some(d @ '2'..='4') => (&upper[..upper.len() - 1], d as i32 - '1' as i32),
        _ => (upper.as_str(), 0),
    };
    let base = match name {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" | "WARNING" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => {
            return Err(err(
                param,
                "expected 1-24 or TRACE, DEBUG, INFO, WARN, ERROR, FATAL",
            ))
        }
    };
    Ok(base + level)
}

pub fn limit(param: &str, s: &str) -> Result<usize, ParamError> {
    let n: usize = s
        .parse()
        .map_err(|_| err(param, "expected a whole number"))?;
    if n == 0 || n > QUERY_LIMIT_MAX {
        return Err(err(
            param,
            format!("must be between 1 and {QUERY_LIMIT_MAX}"),
        ));
    }
    Ok(n)
}

/// Decoded `key=value` pairs of a query string, in order, repeats kept.
pub fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded_parse(query.unwrap_or(""))
}

fn form_urlencoded_parse(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// A path segment percent-decoded: unlike a query string, `+` is itself.
pub fn percent_decode_path(s: &str) -> String {
    percent_decode(&s.replace('+', "%2B"))
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `GET /api/v1/traces` parameters.
pub fn trace_search(query: Option<&str>) -> Result<TraceSearch, ParamError> {
    let mut s = TraceSearch {
        limit: QUERY_LIMIT_DEFAULT,
        spss: SEARCH_SPSS_DEFAULT,
        ..Default::default()
    };
    for (k, v) in pairs(query) {
        match k.as_str() {
            "service" => s.service = Some(v),
            "name" => s.name = Some(v),
            "minDuration" => s.min_duration_nanos = Some(duration(&k, &v)?),
            "maxDuration" => s.max_duration_nanos = Some(duration(&k, &v)?),
            "start" => s.start_unix_nanos = Some(time(&k, &v)?),
            "end" => s.end_unix_nanos = Some(time(&k, &v)?),
            "limit" => s.limit = limit(&k, &v)?,
            "error" => {
                s.error = Some(match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(err(&k, "expected true or false")),
                })
            }
            "spss" => {
                s.spss = v
                    .parse()
                    .ok()
                    .filter(|n| *n <= SEARCH_SPSS_MAX)
                    .ok_or_else(|| err(&k, format!("expected 0 to {SEARCH_SPSS_MAX}")))?
            }
            "timeout" => s.budget = Budget::new(timeout(&k, &v)?),
            "attr" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| err("attr", "expected key=value"))?;
                if s.attrs.len() == SEARCH_ATTRS_MAX {
                    return Err(err(
                        "attr",
                        format!("at most {SEARCH_ATTRS_MAX} attr filters in one search"),
                    ));
                }
                s.attrs.push((key.to_owned(), value.to_owned()));
            }
            _ => return Err(err(&k, "unknown parameter")),
        }
    }
    Ok(s)
}

/// `GET /api/v1/logs` parameters.
pub fn log_search(query: Option<&str>) -> Result<LogSearch, ParamError> {
    let mut s = LogSearch {
        limit: QUERY_LIMIT_DEFAULT,
        ..Default::default()
    };
    for (k, v) in pairs(query) {
        match k.as_str() {
            "service" => s.service = Some(v),
            "minSeverity" => s.min_severity = Some(severity(&k, &v)?),
            "contains" => s.contains = Some(v),
            "traceId" => s.trace_id = Some(trace_id(&k, &v)?),
            "start" => s.start_unix_nanos = Some(time(&k, &v)?),
            "end" => s.end_unix_nanos = Some(time(&k, &v)?),
            "limit" => s.limit = limit(&k, &v)?,
            "timeout" => s.budget = Budget::new(timeout(&k, &v)?),
            _ => return Err(err(&k, "unknown parameter")),
        }
    }
    Ok(s)
}

/// The parameters of a tag discovery query (`scope`, `signal`, `service`, `start`, `end`)
/// into `f`; `false` for a parameter it does not know.
fn tag_param(
    f: &mut TagFilter,
    sel: &mut TagSelection,
    k: &str,
    v: String,
) -> Result<bool, ParamError> {
    match k {
        "scope" => {
            sel.scope = Some(match v.as_str() {
                "resource" => [true, false, true, false],
                "span" => [false, true, false, false],
                "log" => [false, false, false, true],
                _ => return Err(err(k, "expected resource, span or log")),
            })
        }
        "signal" => {
            sel.signal = Some(match v.as_str() {
                "traces" => [true, true, false, false],
                "logs" => [false, false, true, true],
                _ => return Err(err(k, "expected traces or logs")),
            })
        }
        "service" => f.service = Some(v),
        "start" => f.start_unix_nanos = Some(time(k, &v)?),
        "end" => f.end_unix_nanos = Some(time(k, &v)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// The scopes a tag query's `scope` and `signal` pick, each all when absent.
#[derive(Default)]
struct TagSelection {
    scope: Option<[bool; 4]>,
    signal: Option<[bool; 4]>,
}

impl TagSelection {
    fn apply(self, f: &mut TagFilter) -> Result<(), ParamError> {
        let (scope, signal) = (
            self.scope.unwrap_or([true; 4]),
            self.signal.unwrap_or([true; 4]),
        );
        for (i, wanted) in f.scopes.iter_mut().enumerate() {
            *wanted = scope[i] && signal[i];
        }
        if !f.scopes.contains(&true) {
            return Err(err(
                "scope",
                "span attributes are of traces and log attributes of logs: this scope and signal hold nothing",
            ));
        }
        Ok(())
    }
}

/// `GET /api/v1/tags` parameters.
pub fn tags(query: Option<&str>) -> Result<TagFilter, ParamError> {
    let (mut f, mut sel) = (TagFilter::default(), TagSelection::default());
    for (k, v) in pairs(query) {
        if !tag_param(&mut f, &mut sel, &k, v)? {
            return Err(err(&k, "unknown parameter"));
        }
    }
    sel.apply(&mut f)?;
    Ok(f)
}

/// `GET /api/v1/tags/{key}/values` parameters: the filter and the `limit`.
pub fn tag_values(query: Option<&str>) -> Result<(TagFilter, usize), ParamError> {
    let (mut f, mut sel) = (TagFilter::default(), TagSelection::default());
    let mut n = TAG_VALUES_LIMIT_DEFAULT;
    for (k, v) in pairs(query) {
        if k == "limit" {
            n = limit(&k, &v)?;
        } else if !tag_param(&mut f, &mut sel, &k, v)? {
            return Err(err(&k, "unknown parameter"));
        }
    }
    sel.apply(&mut f)?;
    Ok((f, n))
}

/// A search's `timeout`: a duration above zero, at most [`SEARCH_TIMEOUT_MAX`].
fn timeout(param: &str, s: &str) -> Result<Duration, ParamError> {
    let d = Duration::from_nanos(duration(param, s)?);
    if d.is_zero() || d > SEARCH_TIMEOUT_MAX {
        return Err(err(
            param,
            format!(
                "a search's timeout is above 0 and at most {}s",
                SEARCH_TIMEOUT_MAX.as_secs()
            ),
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_forms() {
        assert_eq!(
            time("t", "1700000000000000000"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            time("t", "2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            time("t", "2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            time("t", "2023-11-14T22:13:20.5Z"),
            Ok(1_700_000_000_500_000_000)
        );
        assert!(time("start", "yesterday")
            .unwrap_err()
            .to_string()
            .contains("`start`"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("d", "250ms"), Ok(250_000_000));
        assert_eq!(duration("d", "2s"), Ok(2_000_000_000));
        assert_eq!(duration("d", "1.5s"), Ok(1_500_000_000));
        assert_eq!(duration("d", "1m30s"), Ok(90_000_000_000));
        assert_eq!(duration("d", "42"), Ok(42));
        assert!(duration("d", "fast").is_err());
    }

    #[test]
    fn severities() {
        assert_eq!(severity("s", "INFO"), Ok(9));
        assert_eq!(severity("s", "warn"), Ok(13));
        assert_eq!(severity("s", "ERROR3"), Ok(19));
        assert_eq!(severity("s", "17"), Ok(17));
        assert!(severity("s", "LOUD").is_err());
        assert!(severity("s", "99").is_err());
    }

    #[test]
    fn searches_parse_and_reject_unknown_parameters() {
        let s = trace_search(Some(
            "service=cart&attr=http.method%3DGET&attr=a=b&minDuration=5ms&limit=7",
        ))
        .unwrap();
        assert_eq!(s.service.as_deref(), Some("cart"));
        assert_eq!(
            s.attrs,
            vec![
                ("http.method".into(), "GET".into()),
                ("a".into(), "b".into())
            ]
        );
        assert_eq!(s.min_duration_nanos, Some(5_000_000));
        assert_eq!(s.limit, 7);
        assert!(trace_search(Some("servce=x")).is_err());
        assert_eq!(trace_search(Some("error=true")).unwrap().error, Some(true));
        assert_eq!(
            trace_search(Some("error=false")).unwrap().error,
            Some(false)
        );
        assert!(trace_search(Some("error=yes")).is_err());
        assert!(trace_search(Some("limit=0")).is_err());
        let l = log_search(Some("minSeverity=WARN&contains=timed+out")).unwrap();
        assert_eq!(l.min_severity, Some(13));
        assert_eq!(l.contains.as_deref(), Some("timed out"));
        assert!(log_search(Some("traceId=abc")).is_err());
    }

    #[test]
    fn timeouts_and_attr_counts_are_bounded() {
        use crate::limits::SEARCH_TIMEOUT_DEFAULT;
        assert_eq!(
            trace_search(None).unwrap().budget.timeout,
            SEARCH_TIMEOUT_DEFAULT
        );
        let s = trace_search(Some("timeout=250ms")).unwrap();
        assert_eq!(s.budget.timeout, Duration::from_millis(250));
        let l = log_search(Some("timeout=5m")).unwrap();
        assert_eq!(l.budget.timeout, SEARCH_TIMEOUT_MAX);
        for bad in ["timeout=0", "timeout=5m1s", "timeout=later"] {
            assert!(trace_search(Some(bad)).is_err(), "{bad}");
            assert!(log_search(Some(bad)).is_err(), "{bad}");
        }
        let attrs = |n: usize| {
            (0..n)
                .map(|i| format!("attr=k{i}=v"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert!(trace_search(Some(&attrs(SEARCH_ATTRS_MAX))).is_ok());
        let e = trace_search(Some(&attrs(SEARCH_ATTRS_MAX + 1))).unwrap_err();
        assert!(e.to_string().contains("attr"), "{e}");
    }

    #[test]
    fn tag_queries_pick_scopes_by_scope_and_signal() {
        assert_eq!(tags(None).unwrap().scopes, [true; 4]);
        assert_eq!(
            tags(Some("scope=resource")).unwrap().scopes,
            [true, false, true, false]
        );
        assert_eq!(
            tags(Some("scope=resource&signal=logs")).unwrap().scopes,
            [false, false, true, false]
        );
        assert_eq!(
            tags(Some("signal=traces")).unwrap().scopes,
            [true, true, false, false]
        );
        assert!(tags(Some("scope=span&signal=logs")).is_err());
        assert!(tags(Some("scope=event")).is_err());
        assert!(tags(Some("limit=3")).is_err());
        let (f, n) = tag_values(Some("service=cart&limit=7&start=5&end=9")).unwrap();
        assert_eq!((f.service.as_deref(), n), (Some("cart"), 7));
        assert_eq!((f.start_unix_nanos, f.end_unix_nanos), (Some(5), Some(9)));
        assert_eq!(tag_values(None).unwrap().1, TAG_VALUES_LIMIT_DEFAULT);
        assert!(tag_values(Some("limit=0")).is_err());
    }

    #[test]
    fn path_segments_keep_their_plus() {
        assert_eq!(percent_decode_path("a+b%2Fc"), "a+b/c");
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%20b%"), "a b%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%é%C3%A9"), "%éé");
    }
}
