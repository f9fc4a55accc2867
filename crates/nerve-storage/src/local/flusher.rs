//! Group commit: a few threads that `fdatasync` dirty partitions and then move their high watermark.
//!
//! An append under `fsync=always` writes to the page cache, queues its partition (once, however many appends
//! arrive) and waits. A flusher thread takes the partition, notes how far its log reaches, syncs the files,
//! and publishes that point as the new high watermark: every append that had arrived by then is acknowledged
//! by that one sync. While a sync runs, new appends pile up behind it and share the next one, so the number of
//! syncs adapts to the disk's latency instead of to the request rate. Different partitions sync on different
//! threads at once, because the kernel can overlap syncs of different files.
//!
//! `fsync=interval` partitions are queued with a due time and synced when it comes; their high watermark does
//! not wait for the sync.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::partition::Partition;
use crate::config::FsyncPolicy;

#[derive(Default)]
struct Queue {
    ready: VecDeque<Arc<Partition>>,
    delayed: Vec<(Instant, Arc<Partition>)>,
    shutdown: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

pub(crate) struct Flusher {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Flusher {
    pub(crate) fn start(threads: usize) -> Flusher {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let handles = (0..threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new()
                    .name(format!("nerve-flush-{i}"))
                    .spawn(move || run(&shared))
                    .expect("spawning a flusher thread")
            })
            .collect();
        Flusher {
            shared,
            threads: Mutex::new(handles),
        }
    }

    /// Queues `partition` for a sync unless it is queued already. Called after an append's write: if the flag
    /// is still set, the sync that clears it has not taken its snapshot yet and so will cover this write.
    pub(crate) fn enqueue(
        &self,
        partition: &Arc<Partition>,
        policy: FsyncPolicy,
        interval: Duration,
    ) {
        if partition.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut queue = self.shared.queue.lock();
        match policy {
            FsyncPolicy::Always => queue.ready.push_back(partition.clone()),
            FsyncPolicy::Interval => {
                let due = Instant::now() + interval;
                queue.delayed.push((due, partition.clone()));
            }
            FsyncPolicy::Never => {
                partition.queued.store(false, Ordering::Release);
                return;
            }
        }
        drop(queue);
        self.shared.wake.notify_one();
    }

    pub(crate) fn shutdown(&self) {
        self.shared.queue.lock().shutdown = true;
        self.shared.wake.notify_all();
        for handle in self.threads.lock().drain(..) {
            let _ = handle.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let partition = {
            let mut queue = shared.queue.lock();
            loop {
                let now = Instant::now();
                let mut i = 0;
                while i < queue.delayed.len() {
                    if queue.delayed[i].0 <= now {
                        let (_, p) = queue.delayed.swap_remove(i);
                        queue.ready.push_back(p);
                    } else {
                        i += 1;
                    }
                }
                if let Some(p) = queue.ready.pop_front() {
                    break p;
                }
                if queue.shutdown {
                    return;
                }
                match queue.delayed.iter().map(|(due, _)| *due).min() {
                    Some(due) => {
                        shared.wake.wait_until(&mut queue, due);
                    }
                    None => shared.wake.wait(&mut queue),
                }
            }
        };
        if sync(&partition) {
            let (policy, interval) = {
                let state = partition.state.lock();
                (state.config.fsync, state.config.fsync_interval)
            };
            let mut queue = shared.queue.lock();
            match policy {
                FsyncPolicy::Interval => queue.delayed.push((Instant::now() + interval, partition)),
                FsyncPolicy::Always | FsyncPolicy::Never => queue.ready.push_back(partition),
            }
            drop(queue);
            shared.wake.notify_one();
        }
    }
}

/// Syncs what the partition has written so far and publishes it as durable. The partition stays marked as
/// queued throughout, so no other thread syncs the same files at the same time (that would split one group
/// commit into several); appends that arrive meanwhile are caught by the check at the end, which queues the
/// partition again. Returns whether it must be synced again.
fn sync(partition: &Partition) -> bool {
    let (file, target, generation) = {
        let state = partition.state.lock();
        let file = state.active().file.clone();
        (file, state.end_position(), state.generation)
    };
    if let Err(e) = file.sync_data() {
        // After a failed fsync the kernel may have dropped the dirty pages, so a retry could report success
        // for data that is gone. The only safe answer is to stop accepting writes.
        tracing::error!(partition = %partition.tp, error = %e, "fdatasync failed; taking the partition offline");
        partition.fail(format!("fdatasync failed: {e}"));
        partition.queued.store(false, Ordering::Release);
        return false;
    }
    let mut state = partition.state.lock();
    if state.generation == generation {
        partition.publish_hw(&mut state, target);
    }
    // Under the lock, so an append either wrote before this check (and is seen here) or will find the flag
    // cleared and queue the partition itself.
    if state.end_position() != target {
        return true;
    }
    partition.queued.store(false, Ordering::Release);
    false
}

/// Syncs every segment file of the partition, whatever its policy, and publishes the log end as durable:
/// the last step of closing a store.
pub(crate) fn sync_all(partition: &Partition) -> crate::error::Result<()> {
    let (files, target) = {
        let state = partition.state.lock();
        let files: Vec<_> = state
            .segments
            .iter()
            .map(|s| (s.file.clone(), s.path.clone()))
            .collect();
        (files, state.end_position())
    };
    for (file, path) in files {
        file.sync_data()
            .map_err(|e| crate::error::StorageError::io(path, e))?;
    }
    let mut state = partition.state.lock();
    partition.publish_hw(&mut state, target);
    Ok(())
}
