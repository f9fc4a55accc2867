//! W3C trace context between `tracing` spans and the `traceparent` header, through OpenTelemetry.
//!
//! The SDK exports no spans itself. A service that installs a `tracing_opentelemetry` layer (with the
//! exporter of its choice) gets:
//!
//! - a `nerve_sdk.publish` span (kind producer) per [`crate::Publisher`] publish and a `nerve_sdk.enqueue`
//!   span per [`crate::Outbox`] enqueue, whose context is the record's `traceparent` unless the
//!   [`crate::PublishContext`] names one explicitly (that one then is the span's parent);
//! - a `nerve_sdk.handle` span (kind consumer) per record the consumer runtime handles, a child of the span
//!   named by the record's `traceparent` and linked to it;
//! - [`crate::EventContext::follow_up`] carrying the context of the span the handler runs in, so that
//!   follow-up events continue the trace.
//!
//! Without such a layer spans have no OpenTelemetry context: a record carries a `traceparent` only when a
//! `PublishContext` gives one, and it travels unchanged.

use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::envelope::Envelope;

/// Why a `traceparent` value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent: {0}")]
pub struct InvalidTraceparent(&'static str);

/// Parses a W3C `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`) as the context of a
/// remote span. Strict as the W3C recommends: lowercase hex, ids not all zero, version `ff` refused,
/// version `00` exactly 55 characters (a later version may append `-` and more, which is ignored).
pub fn parse(traceparent: &str) -> Result<SpanContext, InvalidTraceparent> {
    let bytes = traceparent.as_bytes();
    if bytes.len() < 55 {
        return Err(InvalidTraceparent("shorter than 55 characters"));
    }
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return Err(InvalidTraceparent("fields not separated by '-'"));
    }
    let version = hex(&bytes[0..2]).ok_or(InvalidTraceparent("version is not hex"))?;
    match version {
        0xff => return Err(InvalidTraceparent("version ff")),
        0 if bytes.len() != 55 => return Err(InvalidTraceparent("version 00 with extra data")),
        _ if bytes.len() > 55 && bytes[55] != b'-' => {
            return Err(InvalidTraceparent("extra data not separated by '-'"))
        }
        _ => {}
    }
    let trace_id = hex(&bytes[3..35]).ok_or(InvalidTraceparent("trace id is not hex"))?;
    let span_id = hex(&bytes[36..52]).ok_or(InvalidTraceparent("span id is not hex"))?;
    let flags = hex(&bytes[53..55]).ok_or(InvalidTraceparent("flags are not hex"))?;
    if trace_id == 0 {
        return Err(InvalidTraceparent("trace id is all zeros"));
    }
    if span_id == 0 {
        return Err(InvalidTraceparent("span id is all zeros"));
    }
    // The ranges above hold 16, 8 and 1 bytes' worth of hex digits: the conversions cannot fail.
    let (Ok(span_id), Ok(flags)) = (u64::try_from(span_id), u8::try_from(flags)) else {
        return Err(InvalidTraceparent("field out of range"));
    };
    Ok(SpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id),
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

/// Lowercase hex only: W3C says uppercase makes the header invalid, and `from_str_radix` accepts a sign.
/// Bytes rather than `&str` slices: a slice through a multi-byte character would panic.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some((value << 4) | u128::from(nibble))
    })
}

/// `context` as a version-00 `traceparent`.
pub fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The `traceparent` of `span`'s OpenTelemetry context; `None` when it has none (no OpenTelemetry layer,
/// or the span is disabled by a filter).
pub fn of_span(span: &Span) -> Option<String> {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    span_context.is_valid().then(|| format(span_context))
}

/// The `traceparent` of the current span, as [`of_span`].
pub fn current() -> Option<String> {
    of_span(&Span::current())
}

/// What a producer span puts in the record: its own context when OpenTelemetry is active, after making
/// a valid `explicit` traceparent its parent; otherwise `explicit` unchanged, or the current span's
/// context (the producer span may be filtered out while the caller's span is not).
pub(crate) fn for_record(span: &Span, explicit: Option<String>) -> Option<String> {
    if let Some(parent) = explicit.as_deref().and_then(|tp| parse(tp).ok()) {
        // A follow-up published in its handler's span names that span: the span's own (local) parent.
        let current = Span::current().context();
        let current = current.span();
        let current = current.span_context();
        if (current.trace_id(), current.span_id()) != (parent.trace_id(), parent.span_id()) {
            // Only fails without an OpenTelemetry layer, and then there is no span to parent.
            let _ = span.set_parent(Context::new().with_remote_span_context(parent));
        }
    }
    of_span(span).or(explicit).or_else(current)
}

/// OpenTelemetry messaging attributes of a producer span (`operation` is `send` or `create`); set on the
/// OpenTelemetry span only, so that log lines keep to the span's `tracing` fields.
pub(crate) fn producer_attributes(span: &Span, operation: &'static str, topic: &str) {
    if span.is_disabled() {
        return;
    }
    for attribute in [
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", operation),
        KeyValue::new("messaging.destination.name", topic.to_string()),
    ] {
        span.set_attribute(attribute.key, attribute.value);
    }
}

/// Where a published record went, on its producer span.
pub(crate) fn delivered(span: &Span, partition: i32, offset: i64) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("messaging.destination.partition.id", partition.to_string());
    span.set_attribute("messaging.kafka.offset", offset);
}

/// Marks the span failed, for trace views that color failed spans.
pub(crate) fn failed(span: &Span, error: &dyn std::fmt::Display) {
    if span.is_disabled() {
        return;
    }
    span.set_status(Status::error(error.to_string()));
}

/// Makes the consumer span `span` of a record a child of the producer span named by the record's
/// `traceparent`, links it to that span too, and sets the messaging attributes. An invalid traceparent
/// is ignored: the span then starts a trace of its own.
///
/// Parent and link both: the parent keeps the whole flow in one trace (the convention of the Kafka
/// instrumentations for a message processed on its own), and the link is what OpenTelemetry's messaging
/// conventions ask of consumer spans, for backends that follow those rather than the parent.
pub(crate) fn continue_trace(
    span: &Span,
    envelope: &Envelope,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    if span.is_disabled() {
        return;
    }
    if let Some(traceparent) = envelope.traceparent.as_deref() {
        match parse(traceparent) {
            Ok(producer) => {
                // Only fails without an OpenTelemetry layer: nothing to continue then.
                let _ = span.set_parent(Context::new().with_remote_span_context(producer.clone()));
                span.add_link(producer);
            }
            Err(e) => {
                tracing::debug!(parent: span, traceparent, error = %e, "traceparent ignored");
            }
        }
    }
    for attribute in [
        KeyValue::new("messaging.system", "kafka"),
        KeyValue::new("messaging.operation.type", "process"),
        KeyValue::new("messaging.destination.name", topic.to_string()),
        KeyValue::new("messaging.destination.partition.id", partition.to_string()),
        KeyValue::new("messaging.kafka.offset", offset),
        KeyValue::new("messaging.message.id", envelope.event_id.to_string()),
    ] {
        span.set_attribute(attribute.key, attribute.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = parse(VALID).expect("valid");
        assert_eq!(
            context.trace_id(),
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128)
        );
        assert_eq!(context.span_id(), SpanId::from(0x00f0_67aa_0ba9_02b7_u64));
        assert!(context.is_sampled());
        assert!(context.is_remote());
        assert_eq!(format(&context), VALID);
        let unsampled = VALID.replace("-01", "-00");
        assert!(!parse(&unsampled).expect("valid").is_sampled());
    }

    #[test]
    fn later_versions_may_append_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever";
        assert!(parse(later).is_ok());
        assert!(parse(&later[..55]).is_ok());
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_no_context() {
        let span = tracing::info_span!("no layer");
        assert_eq!(of_span(&span), None);
        assert_eq!(for_record(&span, None), None);
        assert_eq!(
            for_record(&span, Some(VALID.to_string())).as_deref(),
            Some(VALID)
        );
    }
}
