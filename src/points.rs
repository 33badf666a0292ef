//! The unit every stage passes along: one timestamped value of one metric.

/// One datapoint. Timestamps are Unix seconds as i64 so that parsing can hold any input
/// before whisper (u32 on disk) decides whether it is in range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub timestamp: i64,
    /// The value; NaN never reaches the cache (the parser rejects it, as carbon does).
    pub value: f64,
}

impl Point {
    /// A point at `timestamp` with `value`.
    pub fn new(timestamp: i64, value: f64) -> Self {
        Point { timestamp, value }
    }
}

/// Seconds since the Unix epoch by the system clock: the default `now` of every operation.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
