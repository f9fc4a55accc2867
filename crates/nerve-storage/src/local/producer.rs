//! Idempotent-producer state of one partition: per producer id, its epoch and its last five batches.
//!
//! Everything here can be rebuilt from the batch headers in the log, which carry producer id, epoch and
//! sequence; a snapshot written at each segment roll only saves rescanning older segments.

use std::collections::{HashMap, VecDeque};

use nerve_wire::BatchHeader;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

/// How many recent batches per producer are remembered for duplicate detection, as in Kafka: a producer
/// has at most five requests in flight.
const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchMeta {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) base_offset: i64,
    pub(crate) last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMeta>,
    /// Wall-clock time of its last append (or of recovery), for expiring idle producers. Not the batch's
    /// timestamp: a producer replaying old events must not lose its deduplication.
    pub(crate) last_timestamp: i64,
}

/// What to do with an incoming batch of an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// New data in sequence: append it.
    Append,
    /// A retry of a batch already stored at these offsets: acknowledge it again, store nothing.
    Duplicate { base_offset: i64, last_offset: i64 },
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProducerStates {
    pub(crate) producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStates {
    /// Decides whether `header` (not yet given offsets) is new, a duplicate, or refused. Batches without a
    /// producer id are always new.
    pub(crate) fn check(&self, header: &BatchHeader) -> Result<SequenceCheck> {
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer (new, or its state expired with retention): accept whatever it sends, as
            // Kafka does.
            return Ok(SequenceCheck::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                current: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            // A bumped epoch starts its sequences from zero.
            if header.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence {
                    producer_id: header.producer_id,
                    expected: 0,
                    received: header.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let last_seq = header.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == header.base_sequence && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            });
        }
        match entry.batches.back() {
            Some(last) if header.base_sequence != next_seq(last.last_seq) => {
                Err(StorageError::OutOfOrderSequence {
                    producer_id: header.producer_id,
                    expected: next_seq(last.last_seq),
                    received: header.base_sequence,
                })
            }
            _ => Ok(SequenceCheck::Append),
        }
    }

    /// Records a batch that was appended at `now_ms` (or found in the log on recovery), with its offsets
    /// assigned.
    pub(crate) fn record(&mut self, header: &BatchHeader, now_ms: i64) {
        if !header.has_producer_id() || header.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
                last_timestamp: header.max_timestamp,
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
        });
        entry.last_timestamp = entry.last_timestamp.max(now_ms);
    }

    /// Forgets batches at or past `offset` (after a truncation); producers left with none are dropped, and a
    /// later batch from them is accepted as from an unknown producer.
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        self.producers.retain(|_, entry| {
            entry.batches.retain(|b| b.last_offset < offset);
            !entry.batches.is_empty()
        });
    }

    /// Forgets producers idle since before `cutoff_ms` (Kafka's `producer.id.expiration.ms`).
    pub(crate) fn expire(&mut self, cutoff_ms: i64) {
        self.producers
            .retain(|_, entry| entry.last_timestamp >= cutoff_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn a_retry_of_one_of_the_last_five_batches_is_a_duplicate_with_its_original_offsets() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            let h = header(1, 0, i * 2, 2, i64::from(i) * 2);
            assert_eq!(states.check(&h).unwrap(), SequenceCheck::Append);
            states.record(&h, 0);
        }
        assert_eq!(
            states.check(&header(1, 0, 10, 2, 0)).unwrap(),
            SequenceCheck::Duplicate {
                base_offset: 10,
                last_offset: 11
            }
        );
        // The sixth-newest batch is forgotten, so its retry is out of order rather than a duplicate.
        assert!(matches!(
            states.check(&header(1, 0, 2, 2, 0)),
            Err(StorageError::OutOfOrderSequence {
                expected: 14,
                received: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_gap_is_out_of_order_and_an_old_epoch_is_refused() {
        let mut states = ProducerStates::default();
        states.record(&header(7, 3, 0, 1, 0), 0);
        assert!(matches!(
            states.check(&header(7, 3, 2, 1, 0)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            states.check(&header(7, 2, 1, 1, 0)),
            Err(StorageError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(
            states.check(&header(7, 4, 0, 1, 0)).unwrap(),
            SequenceCheck::Append
        );
        assert!(matches!(
            states.check(&header(7, 4, 5, 1, 0)),
            Err(StorageError::OutOfOrderSequence { .. })
        ));
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        states.record(&header(1, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(
            states.check(&header(1, 0, 0, 1, 2)).unwrap(),
            SequenceCheck::Append
        );
    }
}
