//! The built-in plaintext TCP listener (`[tcp]`, go-carbon `receiver/tcp`).
//!
//! One thread accepts; each connection gets a thread with a small stack that reads, splits
//! lines across reads and adds them to the cache. Under pressure (cache full) a connection
//! stops reading and retries the refused point until there is room: TCP flow control then
//! slows the sender down, and nothing accepted off the wire is dropped.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::engine::Shared;
use crate::error::Result;
use crate::points::unix_now;

use super::POLL;

/// Most bytes one read asks for once a connection streams: a read is one batch into the
/// cache, and a bigger batch takes each shard lock for more points.
const MAX_READ: usize = 1 << 20;

/// Longest line kept; a longer one is discarded up to its newline and counted as an error
/// (carbon's LineOnlyReceiver drops the whole connection at 16 KiB; a line is never this long
/// legitimately, and the names policy refuses names over 4 KiB anyway).
const MAX_LINE: usize = 64 * 1024;

/// Starts the `[tcp]` listener.
#[derive(Debug)]
pub struct TcpReceiver;

impl TcpReceiver {
    /// Binds `[tcp] listen` and starts the accept thread. go-carbon's `:2003` means every
    /// IPv4 address. The bound address is recorded for `Carbon::tcp_addr`.
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Vec<JoinHandle<()>>> {
        let (local, h) = super::start_stream(
            &shared,
            "tcp",
            &shared.config.tcp.listen,
            |st| &st.tcp_active,
            serve,
        )?;
        shared.listen_addrs.lock().push(local);
        Ok(vec![h])
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(POLL));
    let idle_limit = shared.config.tcp.read_timeout;
    let chunk = shared
        .config
        .tcp
        .buffer_size
        .clamp(16 * 1024, 4 << 20)
        .max(64 * 1024);
    // Reads start at `chunk` and double while they come back full (the sender is ahead), up
    // to MAX_READ: an idle or slow connection keeps a small buffer.
    let max_read = chunk.max(MAX_READ);
    let mut read_size = chunk;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk * 2);
    let mut last_data = Instant::now();
    let mut discarding = false;
    loop {
        let start = buf.len();
        buf.resize(start + read_size, 0);
        let n = match stream.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                // A last line without its newline is still a line: keep it rather than lose it.
                if !discarding {
                    ingest(shared, &buf);
                }
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                buf.truncate(start);
                if shared.receivers_stopping.load(Relaxed)
                    || (!idle_limit.is_zero() && last_data.elapsed() > idle_limit)
                {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        buf.truncate(start + n);
        if n == read_size {
            read_size = (read_size * 2).min(max_read);
        }
        last_data = Instant::now();
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            if buf.len() > MAX_LINE {
                if !discarding {
                    shared.stats.tcp_errors.fetch_add(1, Relaxed);
                    shared.stats.parse_errors.fetch_add(1, Relaxed);
                }
                discarding = true;
                buf.clear();
            }
            continue;
        };
        let mut lines = &buf[..=last_nl];
        if discarding {
            // The tail of an over-long line: skip to its end.
            let first_nl = lines.iter().position(|&b| b == b'\n').unwrap_or(0);
            lines = &lines[first_nl + 1..];
            discarding = false;
        }
        ingest(shared, lines);
        buf.drain(..=last_nl);
    }
}

/// Adds complete lines through the batched core path; a full cache makes this wait for room
/// (or the node closing), so back-pressure reaches the socket instead of losing data.
fn ingest(shared: &Shared, lines: &[u8]) {
    let out = shared.add_lines_waiting(lines, unix_now());
    shared
        .stats
        .tcp_metrics_received
        .fetch_add(out.accepted, Relaxed);
    shared.stats.tcp_errors.fetch_add(out.rejected, Relaxed);
}
