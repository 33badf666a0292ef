//! carbon's pickle listener (`[pickle]`, go-carbon `receiver/tcp` in pickle mode, carbon's
//! `MetricPickleReceiver`).
//!
//! Frames are a 4-byte big-endian length and a pickle of `[(name, (t, v)), …]`
//! ([`crate::parse::pickle`]). A frame is decoded once complete; its bad entries are counted
//! and the rest kept. The framing survives a frame that is not a readable pickle, so that frame
//! is counted and the connection goes on (carbon does the same). A length above
//! `max-message-size` cannot be skipped safely: it is counted and the connection closed.
//! A connection that completes no frame for `read-timeout` (idle, or a slow-loris dribbling a
//! frame) is closed. Points wait for room in a full cache, so a full cache stops the reading.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::engine::Shared;
use crate::error::Result;
use crate::parse::pickle::{self, Limits};
use crate::points::unix_now;

use super::POLL;

/// Starts the `[pickle]` listener.
#[derive(Debug)]
pub struct PickleReceiver;

impl PickleReceiver {
    /// Binds `[pickle] listen` and starts the accept thread; the bound address is recorded
    /// for `Carbon::pickle_addr`.
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Vec<JoinHandle<()>>> {
        let (local, h) = super::start_stream(
            &shared,
            "pickle",
            &shared.config.pickle.listen,
            |st| &st.pickle_active,
            serve,
        )?;
        shared.receiver_addrs.lock().pickle = Some(local);
        Ok(vec![h])
    }
}

/// Why a connection ended badly (each counts one pickle error).
fn fail(shared: &Shared) {
    shared.stats.pickle_errors.fetch_add(1, Relaxed);
    shared.stats.parse_errors.fetch_add(1, Relaxed);
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let cfg = &shared.config.pickle;
    let _ = stream.set_read_timeout(Some(POLL));
    let chunk = if cfg.buffer_size > 0 {
        cfg.buffer_size.clamp(4096, 4 << 20)
    } else {
        64 * 1024
    };
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::new();
    // When the connection last completed a frame (or opened).
    let mut last_frame = Instant::now();
    // Reads start small so that idle connections cost 4 KiB, and grow to `chunk` under load.
    let mut read_size = 4096.min(chunk);
    loop {
        // Decode every complete frame in the buffer.
        let mut off = 0;
        let mut pending = 0usize;
        while buf.len() - off >= 4 {
            let len =
                u32::from_be_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            if len > cfg.max_message_size {
                fail(shared);
                return;
            }
            if buf.len() - off - 4 < len {
                pending = 4 + len - (buf.len() - off);
                break;
            }
            ingest_frame(shared, &buf[off + 4..off + 4 + len], &limits);
            off += 4 + len;
            last_frame = Instant::now();
        }
        buf.drain(..off);
        // Grow with what actually arrives (at most doubling per read): a header announcing
        // 64 MiB costs nothing until the bytes come.
        let start = buf.len();
        let want = read_size.max(pending.min(start));
        buf.resize(start + want, 0);
        match stream.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                if !buf.is_empty() {
                    // A frame cut by the sender's close.
                    fail(shared);
                }
                return;
            }
            Ok(n) => {
                buf.truncate(start + n);
                if n == want {
                    read_size = (read_size * 2).min(chunk);
                }
                // A sender dribbling a frame never lets the read time out: check here too.
                let limit = cfg.read_timeout;
                if !limit.is_zero() && last_frame.elapsed() > limit && !frame_done(&buf) {
                    fail(shared);
                    return;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                buf.truncate(start);
                if shared.receivers_stopping.load(Relaxed) {
                    return;
                }
                let limit = cfg.read_timeout;
                if !limit.is_zero() && last_frame.elapsed() > limit {
                    if !buf.is_empty() {
                        fail(shared);
                    }
                    return;
                }
            }
            Err(_) => {
                buf.truncate(start);
                if !buf.is_empty() {
                    fail(shared);
                }
                return;
            }
        }
        // Keep a little slack only: a big frame's buffer is released once it is consumed.
        if buf.capacity() > 4 * chunk && buf.len() < chunk {
            buf.shrink_to(chunk);
        }
    }
}

/// Whether `buf` starts with a whole frame (which is decoded before the deadline applies).
fn frame_done(buf: &[u8]) -> bool {
    buf.len() >= 4 && buf.len() - 4 >= u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
}

/// Adds the points of one frame as one batch (the path `[tcp]` lines take); a full cache
/// makes this wait (back-pressure).
pub(crate) fn ingest_frame(shared: &Shared, payload: &[u8], limits: &Limits) {
    let result = pickle::with_points(
        payload,
        unix_now(),
        limits,
        |points| shared.add_points_waiting(points),
        |_| {},
    );
    let (received, errors, bad) = match result {
        Ok((out, bad)) => (out.accepted, out.rejected, bad),
        Err(_) => (0, 0, 1),
    };
    shared.stats.parse_errors.fetch_add(bad, Relaxed);
    shared
        .stats
        .pickle_metrics_received
        .fetch_add(received, Relaxed);
    shared.stats.pickle_errors.fetch_add(errors + bad, Relaxed);
}
