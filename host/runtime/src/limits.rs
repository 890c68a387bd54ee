//! Per-step resource limits: linear memory and tables through a
//! `ResourceLimiter` that remembers what it refused, so a refused growth
//! becomes a typed `MemoryLimit` error rather than an anonymous trap.

/// Refusing growth traps at once with this error (instead of letting the
/// guest's allocator abort with `unreachable`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("linear memory limit of {limit} bytes exceeded (asked for {requested} bytes)")]
pub struct MemoryLimitHit {
    /// The limit.
    pub limit: u64,
    /// What the guest asked for.
    pub requested: u64,
}

/// The wall-time limit fired inside Wasm.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("wall-time limit exceeded")]
pub struct TimeLimitHit;

/// Most table elements per table (function pointers); generous for real
/// components, small enough that a table bomb is refused.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// The store's limiter.
pub struct StepLimiter {
    memory_limit: u64,
    /// Bytes of linear memory across every memory of the step.
    used: u64,
    /// The first refused growth, if any.
    pub hit: Option<MemoryLimitHit>,
}

impl StepLimiter {
    /// A limiter allowing `memory_limit` bytes of linear memory per memory.
    pub fn new(memory_limit: u64) -> Self {
        Self {
            memory_limit,
            used: 0,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for StepLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The limit covers all of a step's memories together, not each one.
        let total = self.used + (desired as u64).saturating_sub(current as u64);
        if total > self.memory_limit {
            let hit = MemoryLimitHit {
                limit: self.memory_limit,
                requested: total,
            };
            self.hit.get_or_insert(hit);
            return Err(hit.into());
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
