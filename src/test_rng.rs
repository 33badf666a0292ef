//! The unit tests' pseudo-random numbers: deterministic, so a failure reproduces, and no
//! crate needed for three shifts.

/// Advances `state` by one xorshift64 step (Marsaglia's 13/7/17) and returns the new state.
/// `state` must not be 0, which maps to itself.
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
