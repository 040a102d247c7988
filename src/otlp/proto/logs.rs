//! Log records: the `Signal` of logs, and the `LogRecord` message.

use std::borrow::Cow;

use super::fields::*;
use super::layers::{Names, Signal};
use super::reader::Reader;
use super::values::{any_value, attribute};
use super::{Item, Result};
use crate::domain::validate::{self, Sanitised};
use crate::domain::{AnyValue, LogBatch, LogRecord, Resource, Scope};

pub(super) struct Logs;

impl Signal for Logs {
    type Item<'a> = LogRecord<'a>;
    type Batch<'a> = LogBatch<'a>;
    const NAMES: Names = Names {
        resource_items: "wrong wire type for ExportLogsServiceRequest.resource_logs",
        resource: "wrong wire type for ResourceLogs.resource",
        scope_items: "wrong wire type for ResourceLogs.scope_logs",
        resource_schema_url: "wrong wire type for ResourceLogs.schema_url",
        scope: "wrong wire type for ScopeLogs.scope",
        items: "wrong wire type for ScopeLogs.log_records",
        scope_schema_url: "wrong wire type for ScopeLogs.schema_url",
    };

    fn empty<'a>() -> LogRecord<'a> {
        LogRecord {
            time_unix_nano: 0,
            observed_time_unix_nano: 0,
            severity_number: 0,
            severity_text: Cow::Borrowed(""),
            body: AnyValue::Empty,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            flags: 0,
            trace_id: None,
            span_id: None,
            event_name: Cow::Borrowed(""),
        }
    }

    fn item<'a>(r: Reader<'a>, log: &mut LogRecord<'a>) -> Result<Item<()>> {
        log_record(r, log)
    }

    fn check(log: &mut LogRecord<'_>, stats: &mut Sanitised) -> Item<()> {
        validate::log_record(log, stats);
        Ok(())
    }

    fn batch<'a>(
        resource: Resource<'a>,
        scope: Scope<'a>,
        logs: Vec<LogRecord<'a>>,
    ) -> LogBatch<'a> {
        LogBatch {
            resource,
            scope,
            logs,
        }
    }
}

/// Decodes a log record into `log`, an empty one.
fn log_record<'a>(mut r: Reader<'a>, log: &mut LogRecord<'a>) -> Result<Item<()>> {
    let (mut trace, mut span): (&[u8], &[u8]) = (&[], &[]);
    while let Some((field, wire)) = r.key()? {
        match field {
            LOG_TIME_UNIX_NANO => {
                log.time_unix_nano =
                    r.fixed64(wire, "wrong wire type for LogRecord.time_unix_nano")?;
            }
            LOG_OBSERVED_TIME_UNIX_NANO => {
                log.observed_time_unix_nano = r.fixed64(
                    wire,
                    "wrong wire type for LogRecord.observed_time_unix_nano",
                )?;
            }
            LOG_SEVERITY_NUMBER => {
                log.severity_number =
                    r.int32(wire, "wrong wire type for LogRecord.severity_number")?;
            }
            LOG_SEVERITY_TEXT => {
                log.severity_text = r.str(wire, "wrong wire type for LogRecord.severity_text")?;
            }
            LOG_BODY => {
                let sub = r.message(wire, "wrong wire type for LogRecord.body")?;
                any_value(sub, &mut log.body, ITEM_DEPTH + 1)?;
            }
            LOG_ATTRIBUTES => attribute(
                &mut r,
                wire,
                &mut log.attributes,
                ITEM_DEPTH + 1,
                "wrong wire type for LogRecord.attributes",
            )?,
            LOG_DROPPED_ATTRIBUTES_COUNT => {
                log.dropped_attributes_count = r.uint32(
                    wire,
                    "wrong wire type for LogRecord.dropped_attributes_count",
                )?;
            }
            LOG_FLAGS => log.flags = r.fixed32(wire, "wrong wire type for LogRecord.flags")?,
            LOG_TRACE_ID => trace = r.bytes(wire, "wrong wire type for LogRecord.trace_id")?,
            LOG_SPAN_ID => span = r.bytes(wire, "wrong wire type for LogRecord.span_id")?,
            LOG_EVENT_NAME => {
                log.event_name = r.str(wire, "wrong wire type for LogRecord.event_name")?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(log_ids(log, trace, span))
}

/// Validates a log record's trace context into `log` (see `spans::span_ids` for why in place).
fn log_ids(log: &mut LogRecord<'_>, trace: &[u8], span: &[u8]) -> Item<()> {
    log.trace_id = validate::log_trace_id(trace)?;
    log.span_id = validate::log_span_id(span)?;
    Ok(())
}
