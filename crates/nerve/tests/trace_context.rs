//! A W3C trace context set by a producer reaches consumers untouched, so producer and consumer spans can
//! join one trace (docs/observability.md, "Traces across producers and consumers").

mod common;

use common::{consume, create_topic, produce, producer, Nerve};
use rdkafka::Offset;

#[test]
fn traceparent_and_tracestate_headers_reach_the_consumer_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "traced", 1);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tracestate = "nerve=t61rcWkgMzE,other=x";
    // Compressed, so the headers also survive the batch being stored and served compressed.
    let producer = producer(&nerve, &[("compression.type", "zstd")]);
    let records = vec![(
        "order-17".to_string(),
        "{\"event\":\"OrderPlaced\"}".to_string(),
        vec![
            ("traceparent".to_string(), traceparent.to_string()),
            ("tracestate".to_string(), tracestate.to_string()),
        ],
    )];
    produce(&producer, "traced", &records);
    let received = consume(&nerve, "traced", Offset::Beginning, 1);
    assert_eq!(
        received[0].headers,
        vec![
            (
                "traceparent".to_string(),
                Some(traceparent.as_bytes().to_vec())
            ),
            (
                "tracestate".to_string(),
                Some(tracestate.as_bytes().to_vec())
            ),
        ]
    );
}
