//! Which offset of a partition may be committed: the lowest received record that is not done yet, or past
//! the last received record when all are done. Never past a record that is still being handled, however
//! many records after it are done.

use std::collections::BTreeSet;

#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Received, not done.
    pending: BTreeSet<i64>,
    /// One past the highest offset received.
    next: Option<i64>,
    /// The last position committed (or being committed).
    committed: Option<i64>,
}

impl Tracker {
    /// Records `offset` as received; `false` if it was received before (a redelivery after a pause that
    /// must not be handled twice in parallel with itself).
    pub(crate) fn received(&mut self, offset: i64) -> bool {
        if self.next.is_some_and(|next| offset < next) {
            return false;
        }
        self.pending.insert(offset);
        self.next = Some(offset + 1);
        true
    }

    pub(crate) fn completed(&mut self, offset: i64) {
        self.pending.remove(&offset);
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The offset to commit: where a consumer taking over must start so that nothing unfinished is lost.
    pub(crate) fn position(&self) -> Option<i64> {
        self.pending.first().copied().or(self.next)
    }

    /// The position if it differs from the last one committed.
    pub(crate) fn uncommitted(&self) -> Option<i64> {
        self.position().filter(|p| Some(*p) != self.committed)
    }

    pub(crate) fn mark_committed(&mut self, position: i64) {
        self.committed = Some(position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_never_passes_an_unfinished_record() {
        let mut t = Tracker::default();
        assert_eq!(t.position(), None);
        for offset in [10, 11, 12, 14] {
            assert!(t.received(offset));
        }
        assert_eq!(t.position(), Some(10));
        t.completed(11);
        t.completed(12);
        t.completed(14);
        assert_eq!(t.position(), Some(10), "10 is still being handled");
        t.completed(10);
        assert_eq!(
            t.position(),
            Some(15),
            "a gap (13, compacted away) is no record"
        );
    }

    #[test]
    fn redeliveries_are_refused_and_commits_remembered() {
        let mut t = Tracker::default();
        assert!(t.received(5));
        assert!(!t.received(5));
        assert!(!t.received(3));
        t.completed(5);
        assert_eq!(t.uncommitted(), Some(6));
        t.mark_committed(6);
        assert_eq!(t.uncommitted(), None);
        assert!(t.received(6));
        assert_eq!(
            t.uncommitted(),
            None,
            "6 is pending: the position is still 6"
        );
    }
}
