//! The memory bound of one call: every linear memory and every table of the instance together.
//!
//! A component may contain several core instances, each with its own memories and tables (a
//! Python component has a dozen modules), so a bound checked per memory would let a plugin hold
//! several times its limit. This module owns the running sum and its peak, and the record that a
//! growth was refused, so the failure is reported as `MemoryExceeded` whatever the guest does
//! next. It never allocates or frees anything itself: wasmtime asks it before each growth.

use wasmtime::ResourceLimiter;

/// Host bytes one table element holds: a function or reference pointer.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Refuses any growth that would take the instance's memories and tables past `limit` bytes.
#[derive(Debug)]
pub(crate) struct MemoryGuard {
    limit: usize,
    exceeded: bool,
    /// Bytes of every linear memory and table of the instance together.
    held: usize,
    /// The most `held` reached.
    peak: usize,
}

/// The error a refused growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {0} bytes exceeded")]
struct MemoryLimitExceeded(usize);

impl MemoryGuard {
    /// A guard for a fresh instance, which holds nothing yet.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: false,
            held: 0,
            peak: 0,
        }
    }

    /// The bound, in bytes.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Whether a growth was refused during the call.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// The most the instance held at once, in bytes.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    fn grow(&mut self, bytes: usize) -> wasmtime::Result<bool> {
        let after = self.held.saturating_add(bytes);
        if after > self.limit {
            self.exceeded = true;
            return Err(MemoryLimitExceeded(self.limit).into());
        }
        self.held = after;
        self.peak = self.peak.max(after);
        Ok(true)
    }
}

impl ResourceLimiter for MemoryGuard {
    // Both growth hooks are also called when a memory or table is created (from 0), so `held`
    // counts every one of them from instantiation on.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // The pool's own bound (`max_memory_size`, at least the limit) refused the growth.
        self.exceeded = true;
        Err(MemoryLimitExceeded(self.limit).into())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn memories_and_tables_count_together() {
        let mut guard = MemoryGuard::new(4 * MIB);
        assert!(guard.memory_growing(0, 3 * MIB, None).unwrap());
        assert!(guard.table_growing(0, 1000, None).unwrap());
        // A second memory of 1 MiB fits alone, not beside the first and the table.
        assert!(guard.memory_growing(0, MIB, None).is_err());
        assert!(guard.exceeded());
        assert_eq!(guard.peak(), 3 * MIB + 1000 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn growth_counts_only_what_is_added() {
        let mut guard = MemoryGuard::new(4 * MIB);
        guard.memory_growing(0, MIB, None).unwrap();
        guard.memory_growing(MIB, 2 * MIB, None).unwrap();
        guard.memory_growing(0, 2 * MIB, None).unwrap();
        assert_eq!(guard.peak(), 4 * MIB);
        assert!(!guard.exceeded());
        assert!(guard.memory_growing(2 * MIB, 2 * MIB + 1, None).is_err());
        assert_eq!(guard.limit(), 4 * MIB);
    }

    #[test]
    fn a_failed_growth_in_the_pool_is_reported_as_exceeded() {
        let mut guard = MemoryGuard::new(MIB);
        assert!(
            guard
                .memory_grow_failed(wasmtime::Error::msg("pool"))
                .is_err()
        );
        assert!(guard.exceeded());
    }
}
