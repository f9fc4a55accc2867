//! The envelope: what every event carries besides its payload, in Kafka headers so that any consumer (or
//! `kcat`) can read it without knowing the payload's format.
//!
//! | Header                  | Value                                                                       |
//! |-------------------------|-----------------------------------------------------------------------------|
//! | `nerve-event-id`        | UUID v7 (time-ordered), text form                                           |
//! | `nerve-event-type`      | [`Event::NAME`](crate::Event::NAME)                                         |
//! | `nerve-event-version`   | [`Event::VERSION`](crate::Event::VERSION), decimal                          |
//! | `nerve-occurred-at`     | milliseconds since the Unix epoch, decimal                                  |
//! | `nerve-correlation-id`  | the id shared by every event of one business flow                           |
//! | `nerve-causation-id`    | the event id of the event that caused this one (absent for a flow's first)  |
//! | `traceparent`           | W3C trace context (`00-<trace id>-<span id>-<flags>`), when there is one    |
//!
//! All values are UTF-8 text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Header, Headers, OwnedHeaders};
use uuid::Uuid;

/// Header: the event id.
pub const EVENT_ID: &str = "nerve-event-id";
/// Header: the event type.
pub const EVENT_TYPE: &str = "nerve-event-type";
/// Header: the event version.
pub const EVENT_VERSION: &str = "nerve-event-version";
/// Header: when the event occurred.
pub const OCCURRED_AT: &str = "nerve-occurred-at";
/// Header: the correlation id.
pub const CORRELATION_ID: &str = "nerve-correlation-id";
/// Header: the causation id.
pub const CAUSATION_ID: &str = "nerve-causation-id";
/// Header: the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The metadata of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique per event; what deduplication keys on.
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: u32,
    /// Millisecond precision: what the header carries.
    pub occurred_at: SystemTime,
    /// Never empty: an event that starts a flow uses its own event id.
    pub correlation_id: String,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
}

/// Why a record's headers are not a valid envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {header} is not valid: {value:?}")]
    Invalid { header: &'static str, value: String },
}

impl Envelope {
    /// A new envelope for an event of `event_type`/`event_version` occurring now, with a fresh event id and
    /// the ids of `context` (the event id as correlation id when the context has none).
    pub fn new(event_type: &str, event_version: u32, context: &PublishContext) -> Envelope {
        let event_id = Uuid::now_v7();
        Envelope {
            event_id,
            event_type: event_type.to_string(),
            event_version,
            occurred_at: truncate_to_millis(SystemTime::now()),
            correlation_id: context
                .correlation_id
                .clone()
                .unwrap_or_else(|| event_id.to_string()),
            causation_id: context.causation_id.clone(),
            traceparent: context.traceparent.clone(),
        }
    }

    /// The envelope as Kafka headers.
    pub fn to_headers(&self) -> OwnedHeaders {
        let pairs = self.header_pairs();
        let mut headers = OwnedHeaders::new_with_capacity(pairs.len());
        for (key, value) in &pairs {
            headers = headers.insert(header(key, value));
        }
        headers
    }

    /// The envelope as (header, value) pairs, in the order [`Envelope::to_headers`] writes them: for
    /// stores that keep a record's headers until it is published (the outbox).
    pub fn header_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            (EVENT_ID, self.event_id.to_string()),
            (EVENT_TYPE, self.event_type.clone()),
            (EVENT_VERSION, self.event_version.to_string()),
            (
                OCCURRED_AT,
                millis_since_epoch(self.occurred_at).to_string(),
            ),
            (CORRELATION_ID, self.correlation_id.clone()),
        ];
        if let Some(causation) = &self.causation_id {
            pairs.push((CAUSATION_ID, causation.clone()));
        }
        if let Some(traceparent) = &self.traceparent {
            pairs.push((TRACEPARENT, traceparent.clone()));
        }
        pairs
    }

    /// Reads the envelope from a record's headers. Other headers are ignored; of a header given twice the
    /// last counts, as in Kafka's own `lastHeader`.
    pub fn from_headers<H: Headers>(headers: &H) -> Result<Envelope, EnvelopeError> {
        let id = required(headers, EVENT_ID)?;
        let event_id = Uuid::parse_str(&id).map_err(|_| EnvelopeError::Invalid {
            header: EVENT_ID,
            value: id,
        })?;
        let event_type = required(headers, EVENT_TYPE)?;
        let version = required(headers, EVENT_VERSION)?;
        let event_version = version.parse().map_err(|_| EnvelopeError::Invalid {
            header: EVENT_VERSION,
            value: version,
        })?;
        let occurred = required(headers, OCCURRED_AT)?;
        let millis: u64 = occurred.parse().map_err(|_| EnvelopeError::Invalid {
            header: OCCURRED_AT,
            value: occurred,
        })?;
        Ok(Envelope {
            event_id,
            event_type,
            event_version,
            occurred_at: UNIX_EPOCH + Duration::from_millis(millis),
            correlation_id: required(headers, CORRELATION_ID)?,
            causation_id: header_text(headers, CAUSATION_ID)?,
            traceparent: header_text(headers, TRACEPARENT)?,
        })
    }
}

/// The ids an event inherits from what caused it. Empty for an event that starts a flow;
/// [`crate::consumer::EventContext::follow_up`] gives the context for events published while handling one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishContext {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
}

impl PublishContext {
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }
}

/// A new W3C `traceparent` for a trace that starts here (random trace and span ids, sampled), for services
/// that have no OpenTelemetry context of their own.
pub fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

pub(crate) fn millis_since_epoch(time: SystemTime) -> u64 {
    // Times before the epoch only come from a broken clock; 0 keeps the header parseable.
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn truncate_to_millis(time: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis_since_epoch(time))
}

fn header<'a>(key: &'a str, value: &'a String) -> Header<'a, &'a String> {
    Header {
        key,
        value: Some(value),
    }
}

fn required<H: Headers>(headers: &H, name: &'static str) -> Result<String, EnvelopeError> {
    header_text(headers, name)?.ok_or(EnvelopeError::Missing(name))
}

pub(crate) fn header_text<H: Headers>(
    headers: &H,
    name: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    let Some(value) = headers
        .iter()
        .filter(|h| h.key == name)
        .last()
        .and_then(|h| h.value)
    else {
        return Ok(None);
    };
    match std::str::from_utf8(value) {
        Ok(text) => Ok(Some(text.to_string())),
        Err(_) => Err(EnvelopeError::Invalid {
            header: name,
            value: String::from_utf8_lossy(value).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let context = PublishContext::default()
            .with_correlation_id("order-17")
            .with_causation_id("cause")
            .with_traceparent(new_traceparent());
        let envelope = Envelope::new("shop.OrderPlaced", 3, &context);
        let back = Envelope::from_headers(&envelope.to_headers()).expect("valid");
        assert_eq!(back, envelope);
    }

    #[test]
    fn a_first_event_is_its_own_correlation() {
        let envelope = Envelope::new("t", 1, &PublishContext::default());
        assert_eq!(envelope.correlation_id, envelope.event_id.to_string());
        assert_eq!(envelope.causation_id, None);
        let back = Envelope::from_headers(&envelope.to_headers()).expect("valid");
        assert_eq!(back.traceparent, None);
    }

    #[test]
    fn missing_and_invalid_headers_are_named() {
        let headers = OwnedHeaders::new().insert(Header {
            key: EVENT_ID,
            value: Some("not-a-uuid"),
        });
        assert!(matches!(
            Envelope::from_headers(&headers),
            Err(EnvelopeError::Invalid {
                header: EVENT_ID,
                ..
            })
        ));
        assert!(matches!(
            Envelope::from_headers(&OwnedHeaders::new()),
            Err(EnvelopeError::Missing(EVENT_ID))
        ));
    }

    #[test]
    fn traceparents_have_the_w3c_shape() {
        let tp = new_traceparent();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
    }
}
