//! Offset and timestamp lookups checked against a plain in-memory model of the log.

mod common;

use bytes::Bytes;
use common::*;
use nerve_storage::{LogStore, TopicPartition};
use nerve_wire::records::BatchBuilder;
use nerve_wire::Compression;
use proptest::prelude::*;

/// The model: every record's (offset, timestamp) in log order.
#[derive(Default)]
struct Model {
    records: Vec<(i64, i64)>,
}

impl Model {
    fn first_at_or_after(&self, timestamp: i64, log_start: i64) -> Option<(i64, i64)> {
        self.records
            .iter()
            .copied()
            .find(|&(o, t)| o >= log_start && t >= timestamp)
    }

    fn max_timestamp(&self, log_start: i64) -> Option<(i64, i64)> {
        let visible = self
            .records
            .iter()
            .copied()
            .filter(|&(o, _)| o >= log_start);
        let max = visible.clone().map(|(_, t)| t).max()?;
        visible.into_iter().find(|&(_, t)| t == max)
    }
}

fn arb_batches() -> impl Strategy<Value = Vec<(Vec<i64>, u8)>> {
    // Each batch: record timestamps (not necessarily increasing, as producers' clocks are not) and a codec.
    prop::collection::vec((prop::collection::vec(0i64..5_000, 1..12), 0u8..5), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn timestamp_and_offset_lookups_agree_with_a_model(
        batches in arb_batches(),
        probes in prop::collection::vec(-10i64..5_100, 1..30),
        offset_probes in prop::collection::vec(0usize..400, 1..20),
        delete_before in prop::option::of(0usize..100),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let tp = TopicPartition::new("lookups", 0);
            let cfg = config(&[("segment.bytes", "2048"), ("index.interval.bytes", "256")]);
            let store = fresh(dir.path(), &tp, &cfg).await;
            let mut model = Model::default();
            for (timestamps, codec) in &batches {
                let mut b = BatchBuilder::new(T0 + timestamps[0]);
                b.compression = Compression::from_id(*codec).unwrap();
                for (i, t) in timestamps.iter().enumerate() {
                    b.push(T0 + t, Some(format!("k{i}").as_bytes()), Some(&[i as u8; 40]), Vec::new());
                }
                let info = store.append(&tp, Bytes::from(b.build().unwrap())).await.unwrap();
                for (i, t) in timestamps.iter().enumerate() {
                    model.records.push((info.base_offset + i as i64, T0 + t));
                }
            }
            let end = model.records.len() as i64;
            let mut log_start = 0;
            if let Some(d) = delete_before {
                log_start = (d as i64).min(end);
                store.delete_records_before(&tp, log_start).await.unwrap();
            }

            for probe in &probes {
                let got = store.offset_for_timestamp(&tp, T0 + probe).await.unwrap();
                let want = model.first_at_or_after(T0 + probe, log_start);
                assert_eq!(got.map(|l| (l.offset, l.timestamp)), want, "lookup of timestamp {probe}");
            }
            let got = store.max_timestamp(&tp).await.unwrap();
            assert_eq!(got.map(|l| (l.offset, l.timestamp)), model.max_timestamp(log_start));

            for probe in &offset_probes {
                let offset = *probe as i64;
                let result = store.read(&tp, offset, 1).await;
                if offset < log_start || offset > end {
                    assert!(result.is_err(), "offset {offset} is out of [{log_start}, {end}]");
                    continue;
                }
                let data = result.unwrap().data;
                if offset == end {
                    assert!(data.is_empty());
                    continue;
                }
                let first = &common::batches(&data)[0].0;
                assert!(first.base_offset <= offset && offset <= first.last_offset(),
                    "read at {offset} returned batch {}..={}", first.base_offset, first.last_offset());
            }
        });
    }
}
