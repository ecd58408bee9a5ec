//! Turns for read-modify-write of one record within this replica.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, PoisonError, Weak},
};

use tokio::sync::{Mutex, OwnedMutexGuard};

/// One async lock per key (a tenant, a user), taken around the read-modify-write of that
/// record, so that this replica's parallel writes to one record take turns instead of
/// racing; writes of other replicas are handled by the retry around the optimistic update.
/// Entries of locks nobody holds or waits for are dropped as the map grows, so it stays
/// small however many records are written.
pub(crate) struct WriteTurns<K>(Arc<std::sync::Mutex<HashMap<K, Weak<Mutex<()>>>>>);

impl<K> Clone for WriteTurns<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for WriteTurns<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

/// Past this many entries, unused ones are dropped before a new one is added.
const PRUNE_AT: usize = 1024;

impl<K: Eq + Hash + Copy> WriteTurns<K> {
    /// Waits for the turn to write record `key`; the turn ends when the guard is dropped.
    pub(crate) async fn take(&self, key: K) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match map.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if map.len() >= PRUNE_AT {
                        map.retain(|_, lock| lock.strong_count() > 0);
                    }
                    let lock = Arc::new(Mutex::new(()));
                    map.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_takes_turns_and_unused_entries_are_dropped() {
        let turns = WriteTurns::<u32>::default();
        let first = turns.take(1).await;
        // The same key waits; another key does not.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), turns.take(1))
                .await
                .is_err()
        );
        drop(turns.take(2).await);
        drop(first);
        drop(turns.take(1).await);
        for key in 0..(PRUNE_AT as u32 + 10) {
            drop(turns.take(key).await);
        }
        let size = turns.0.lock().unwrap_or_else(PoisonError::into_inner).len();
        assert!(size <= PRUNE_AT, "{size}");
    }
}
