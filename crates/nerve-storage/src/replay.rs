//! Reading a partition's records from start to end, for the services that keep their state in a compacted
//! topic (committed offsets in `__consumer_offsets`, schemas in `_schemas`) and rebuild it on start.

use nerve_wire::batch::peek_total_len;
use nerve_wire::records::{decode_records, Record};
use nerve_wire::BatchHeader;

use crate::{LogStore, Offset, Result, StorageError, TopicPartition};

/// How many bytes one read asks for.
const READ_BYTES: usize = 1 << 20;
/// The most a compressed batch may inflate to while replaying.
const MAX_DECOMPRESSED: usize = 64 << 20;

/// Calls `on_record` with every record from the log start to the high watermark, in offset order, with
/// the record's offset. A batch whose records do not decode is skipped with a warning (its header is
/// intact, or the read would have failed), so one bad batch cannot stop a service from starting. Returns
/// the offset after the last record seen.
pub async fn replay(
    log: &dyn LogStore,
    tp: &TopicPartition,
    mut on_record: impl FnMut(Offset, Record),
) -> Result<Offset> {
    let offsets = log.offsets(tp)?;
    let end = offsets.high_watermark;
    let mut position = offsets.log_start;
    while position < end {
        let read = log.read(tp, position, READ_BYTES).await?;
        let before = position;
        let mut data = &read.data[..];
        while let Some(Ok(len)) = peek_total_len(data) {
            if len > data.len() {
                break;
            }
            let (batch, rest) = data.split_at(len);
            data = rest;
            match decode_records(batch, MAX_DECOMPRESSED) {
                Ok((header, records)) => {
                    for record in records {
                        let offset = record.offset(&header);
                        if offset >= position && offset < end {
                            on_record(offset, record);
                        }
                    }
                    position = position.max(header.last_offset() + 1);
                }
                Err(e) => {
                    tracing::warn!(partition = %tp, error = %e, "skipping an unreadable batch");
                    let header =
                        BatchHeader::parse(batch).map_err(|_| StorageError::CorruptBatch(e))?;
                    position = position.max(header.last_offset() + 1);
                }
            }
        }
        if position == before {
            break;
        }
    }
    Ok(position)
}
