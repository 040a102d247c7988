//! Running queries: [`run_local`] answers from one shard's index and segments (reads mmapped
//! records zero-copy); [`coordinate`] runs on the shard that received the HTTP request, asks
//! the shards concerned over the mesh (a trace lookup asks its owner only, plus shards holding
//! data from another shard count) and merges their answers.
//!
//! Searches scan the whole index, newest first, and may read a record per entry: millions of
//! entries take seconds. They run on the shard's thread, between its ingest work, so they scan
//! in slices of [`crate::limits::QUERY_SLICE`] (`scan::Slice`) and let the reactor run in between: a search
//! never stalls ingest for much longer than one slice.

mod logs;
mod records;
mod scan;
mod sealed;
mod snapshot;
mod tags;
mod traces;

use std::rc::Rc;

pub use records::{render, trace_json, trace_proto};

use logs::search_logs_local;
use snapshot::metrics_snapshot;
use traces::{newest_first, search_traces_local};

use crate::index::TraceSummary;
use crate::limits::SEARCHES_MAX;
use crate::metrics::add;
use crate::query::{Budget, CancelOnDrop, QueryRequest, QueryResponse, Refusal};
use crate::route::{owner_of, ShardId};
use crate::shard::mesh::CallError;
use crate::shard::Shard;

/// Answers `q` from this shard's data only. Searches run in the shard's query task queue
/// (low shares) and yield to its other work between slices of their scan; the other queries
/// are bounded (one trace, the services, the metrics) and answer at once.
pub async fn run_local(shard: &Rc<Shard>, q: &QueryRequest) -> QueryResponse {
    match q {
        QueryRequest::SearchTraces(s) => {
            let (sh, s) = (shard.clone(), s.clone());
            let search = async move {
                let unfinished = Unfinished(Some(sh.clone()));
                let (traces, partial) = search_traces_local(&sh, &s).await;
                unfinished.done();
                QueryResponse::Traces { traces, partial }
            };
            in_query_queue(shard, search).await
        }
        QueryRequest::SearchLogs(s) => {
            let (sh, s) = (shard.clone(), s.clone());
            let search = async move {
                let unfinished = Unfinished(Some(sh.clone()));
                let (hits, partial) = search_logs_local(&sh, &s).await;
                unfinished.done();
                QueryResponse::Logs { hits, partial }
            };
            in_query_queue(shard, search).await
        }
        QueryRequest::Trace(id) => {
            let mut groups = sealed::trace_groups(shard, id).await;
            let (index, store) = (shard.index.borrow(), shard.store.borrow());
            groups.extend(trace_json(&index, &store, id));
            QueryResponse::Trace(groups)
        }
        QueryRequest::TraceProto(id) => {
            let mut groups = sealed::trace_proto_groups(shard, id).await;
            let (index, store) = (shard.index.borrow(), shard.store.borrow());
            groups.extend(trace_proto(&index, &store, id));
            QueryResponse::TraceProto(groups)
        }
        QueryRequest::Services => {
            let mut services = shard.index.borrow().services();
            for s in shard.sealed.borrow().services() {
                if !services.contains(&s) {
                    services.push(s);
                }
            }
            QueryResponse::Services(services)
        }
        QueryRequest::Operations(service) => {
            let mut names = shard.index.borrow().operations_of(service);
            names.extend(shard.sealed.borrow().operations_of(service));
            names.sort_unstable();
            names.dedup();
            QueryResponse::Operations(names)
        }
        QueryRequest::Tags(f) => {
            let (tags, truncated) = tags::tags_local(shard, f);
            QueryResponse::Tags { tags, truncated }
        }
        QueryRequest::TagValues { key, filter, .. } => {
            let (values, truncated) = tags::tag_values_local(shard, key, filter);
            QueryResponse::TagValues { values, truncated }
        }
        QueryRequest::Metrics => {
            let (index, store) = (shard.index.borrow(), shard.store.borrow());
            QueryResponse::Metrics(Box::new(metrics_snapshot(shard, &index, &store)))
        }
    }
}

/// Counts a search as cancelled if it is dropped before it is [`Unfinished::done`]: the
/// shard that took the request drops its own part when the request goes away (the other
/// shards' parts see the budget's flag instead).
struct Unfinished(Option<Rc<Shard>>);

impl Unfinished {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(shard) = &self.0 {
            add(&shard.metrics.searches_cancelled, 1);
        }
    }
}

/// Runs `search` in the shard's query task queue and waits for its answer; refused when
/// [`SEARCHES_MAX`] run already.
async fn in_query_queue(
    shard: &Shard,
    search: impl std::future::Future<Output = QueryResponse> + 'static,
) -> QueryResponse {
    if shard.searches.get() >= SEARCHES_MAX {
        return QueryResponse::Failed(Refusal::SearchesFull {
            shard: shard.id,
            running: SEARCHES_MAX,
        });
    }
    /// Counts a search while it runs, however it ends (a cancelled one included).
    struct Running<'a>(&'a std::cell::Cell<usize>);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }
    shard.searches.set(shard.searches.get() + 1);
    let _running = Running(&shard.searches);
    match glommio::spawn_local_into(search, shard.query_queue) {
        Ok(task) => task.await,
        Err(e) => QueryResponse::Failed(Refusal::NotStarted {
            shard: shard.id,
            reason: e.to_string(),
        }),
    }
}

/// Why a coordinated query failed: every kind is retryable (503).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// A shard concerned could not be asked (no credit left, or gone).
    #[error("busy: {0}")]
    Call(#[from] CallError),
    /// A shard asked went away before it answered.
    #[error("busy: {0} did not answer")]
    NoAnswer(ShardId),
    /// A shard asked could not answer.
    #[error("busy: {0}")]
    Refused(Refusal),
}

/// Every shard's counters, gauges and histograms, merged: `coordinate` for
/// [`QueryRequest::Metrics`], with the answer's type.
pub async fn metrics(shard: &Rc<Shard>) -> Result<crate::metrics::Snapshot, QueryError> {
    let answers = gather(shard, &QueryRequest::Metrics).await?;
    merge_metrics(answers).ok_or(QueryError::Refused(Refusal::NoAnswer))
}

/// Runs `q` on every shard concerned and merges the answers. A search's clock starts here,
/// and its copies on every shard are cancelled if this future is dropped before they end
/// (the request's client went away).
pub async fn coordinate(
    shard: &Rc<Shard>,
    mut q: QueryRequest,
) -> Result<QueryResponse, QueryError> {
    let budget = match &mut q {
        QueryRequest::SearchTraces(s) => Some(&mut s.budget),
        QueryRequest::SearchLogs(s) => Some(&mut s.budget),
        _ => None,
    };
    let _cancel = budget.map(|b| {
        b.start();
        CancelOnDrop(b.clone())
    });
    let answers = gather(shard, &q).await?;
    Ok(merge(&q, answers))
}

/// Counts a search part stopped by its budget, as timed out or cancelled; always `true`: its
/// answer is partial.
fn count_stopped(shard: &Shard, budget: &Budget) -> bool {
    match budget.cancelled() {
        true => add(&shard.metrics.searches_cancelled, 1),
        false => add(&shard.metrics.searches_timed_out, 1),
    }
    true
}

/// Every answer to `q` of the shards concerned, this one's included; an error if any shard
/// could not answer.
async fn gather(shard: &Rc<Shard>, q: &QueryRequest) -> Result<Vec<QueryResponse>, QueryError> {
    let targets: Vec<ShardId> = match q {
        QueryRequest::Trace(id) | QueryRequest::TraceProto(id) => {
            let owner = owner_of(id, shard.count);
            (0..shard.count)
                .map(ShardId)
                .filter(|s| *s == owner || shard.foreign[s.index()])
                .collect()
        }
        _ => (0..shard.count).map(ShardId).collect(),
    };
    // Ask everybody first (admission: credits for all, or nobody is asked), then answer locally.
    for t in &targets {
        if *t != shard.id && !shard.mesh.has_credit(*t) {
            return Err(QueryError::Call(CallError::NoCredit(*t)));
        }
    }
    let mut pending = Vec::new();
    for t in &targets {
        if *t != shard.id {
            let answer = shard.mesh.query(*t, q.clone())?;
            pending.push((*t, answer));
        }
    }
    let mut answers = Vec::with_capacity(targets.len());
    if targets.contains(&shard.id) {
        answers.push(run_local(shard, q).await);
    }
    for (t, answer) in pending {
        match answer.await {
            Some(a) => answers.push(a),
            None => return Err(QueryError::NoAnswer(t)),
        }
    }
    // One shard's failure fails the query: a merge without its answer would be silently short.
    if let Some(QueryResponse::Failed(why)) = answers
        .iter()
        .find(|a| matches!(a, QueryResponse::Failed(_)))
    {
        return Err(QueryError::Refused(why.clone()));
    }
    Ok(answers)
}

fn merge(q: &QueryRequest, answers: Vec<QueryResponse>) -> QueryResponse {
    match q {
        QueryRequest::Trace(_) => {
            let mut groups = Vec::new();
            for a in answers {
                if let QueryResponse::Trace(g) = a {
                    groups.extend(g);
                }
            }
            QueryResponse::Trace(groups)
        }
        QueryRequest::TraceProto(_) => {
            let mut groups = Vec::new();
            for a in answers {
                if let QueryResponse::TraceProto(g) = a {
                    groups.extend(g);
                }
            }
            QueryResponse::TraceProto(groups)
        }
        QueryRequest::SearchTraces(s) => {
            let mut by_id: std::collections::HashMap<String, TraceSummary> = Default::default();
            let mut partial = false;
            for a in answers {
                if let QueryResponse::Traces { traces, partial: p } = a {
                    partial |= p;
                    for t in traces {
                        match by_id.get_mut(&t.trace_id) {
                            Some(existing) => existing.merge(&t),
                            None => {
                                by_id.insert(t.trace_id.clone(), t);
                            }
                        }
                    }
                }
            }
            let mut out: Vec<TraceSummary> = by_id.into_values().collect();
            newest_first(&mut out, s.limit);
            QueryResponse::Traces {
                traces: out,
                partial,
            }
        }
        QueryRequest::SearchLogs(s) => {
            let (mut hits, mut partial) = (Vec::new(), false);
            for a in answers {
                if let QueryResponse::Logs {
                    hits: h,
                    partial: p,
                } = a
                {
                    hits.extend(h);
                    partial |= p;
                }
            }
            hits.sort_by_key(|h| std::cmp::Reverse(h.time_unix_nanos));
            hits.truncate(s.limit);
            QueryResponse::Logs { hits, partial }
        }
        QueryRequest::Metrics => match merge_metrics(answers) {
            Some(m) => QueryResponse::Metrics(Box::new(m)),
            None => QueryResponse::Failed(Refusal::NoAnswer),
        },
        QueryRequest::Services => QueryResponse::Services(names(answers, |a| match a {
            QueryResponse::Services(s) => Some(s),
            _ => None,
        })),
        QueryRequest::Operations(_) => QueryResponse::Operations(names(answers, |a| match a {
            QueryResponse::Operations(s) => Some(s),
            _ => None,
        })),
        QueryRequest::Tags(_) => {
            let (mut all, mut truncated) = (Vec::new(), false);
            for a in answers {
                if let QueryResponse::Tags { tags, truncated: t } = a {
                    all.extend(tags);
                    truncated |= t;
                }
            }
            all.sort_unstable();
            all.dedup();
            QueryResponse::Tags {
                tags: all,
                truncated,
            }
        }
        QueryRequest::TagValues { limit, .. } => {
            let (mut counts, mut truncated) = (tags::ValueCounts::default(), false);
            for a in answers {
                if let QueryResponse::TagValues {
                    values,
                    truncated: t,
                } = a
                {
                    for (v, n) in &values {
                        counts.add(v, *n);
                    }
                    truncated |= t;
                }
            }
            QueryResponse::TagValues {
                values: counts.most_frequent(*limit),
                truncated,
            }
        }
    }
}

/// The names the shards' answers hold (`names_of` each), sorted, each once.
fn names(
    answers: Vec<QueryResponse>,
    names_of: impl Fn(QueryResponse) -> Option<Vec<String>>,
) -> Vec<String> {
    let mut all: Vec<String> = answers.into_iter().filter_map(names_of).flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The shards' metrics merged into one snapshot; `None` without any.
fn merge_metrics(answers: Vec<QueryResponse>) -> Option<crate::metrics::Snapshot> {
    let mut merged: Option<crate::metrics::Snapshot> = None;
    for a in answers {
        if let QueryResponse::Metrics(s) = a {
            match &mut merged {
                Some(m) => m.merge(&s),
                None => merged = Some(*s),
            }
        }
    }
    merged
}
