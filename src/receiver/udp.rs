//! The plaintext UDP listener (`[udp]`, go-carbon `receiver/udp`).
//!
//! One thread reads datagrams; each holds any number of `\n`-terminated lines. Datagrams are
//! never joined, so a last line without its `\n` is a line a sender cut to fit the datagram:
//! it is dropped and counted in `udp_errors` (a cut line can still parse, e.g. `a.b 12 17000`
//! of `a.b 12 1700000000`, and would store a wrong point). UDP cannot slow a sender down, so
//! when the cache is full the point is refused and counted as overflow, as go-carbon drops it.

use std::io::ErrorKind;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;

use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::parse::plain;
use crate::points::unix_now;

use super::POLL;

/// Largest UDP payload (IPv4 65,507, IPv6 jumbograms aside).
const MAX_DATAGRAM: usize = 65_536;

/// Starts the `[udp]` listener.
#[derive(Debug)]
pub struct UdpReceiver;

impl UdpReceiver {
    /// Binds `[udp] listen` and starts the reader thread; the bound address is recorded for
    /// `Carbon::udp_addr`.
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Vec<JoinHandle<()>>> {
        let listen = &shared.config.udp.listen;
        let addrs = super::resolve("udp", listen)?;
        let sock = UdpSocket::bind(&addrs[..])
            .map_err(|e| Error::io(format!("[udp] listen {listen}"), e))?;
        sock.set_read_timeout(Some(POLL))
            .map_err(|e| Error::io("udp listener", e))?;
        let local = sock
            .local_addr()
            .map_err(|e| Error::io("udp listener", e))?;
        shared.receiver_addrs.lock().udp = Some(local);
        let h = std::thread::Builder::new()
            .name("carbonlite-udp".into())
            .spawn(move || read_loop(&sock, &shared))
            .map_err(|e| Error::io("carbonlite-udp", e))?;
        Ok(vec![h])
    }
}

fn read_loop(sock: &UdpSocket, shared: &Shared) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.receivers_stopping.load(Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, _peer)) => ingest_datagram(shared, &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                shared.stats.udp_errors.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Adds the complete lines of one datagram and counts a cut last line.
pub(crate) fn ingest_datagram(shared: &Shared, datagram: &[u8]) {
    let (lines, tail) = match datagram.iter().rposition(|&b| b == b'\n') {
        Some(i) => datagram.split_at(i + 1),
        None => (&datagram[..0], datagram),
    };
    let mut errors = 0u64;
    if tail.iter().any(|b| !b.is_ascii_whitespace()) {
        errors += 1;
        shared.stats.parse_errors.fetch_add(1, Relaxed);
    }
    let mut received = 0u64;
    let (_, bad) = plain::for_each_line(
        lines,
        unix_now(),
        |name, p| match shared.add_point(name, p) {
            Ok(()) => received += 1,
            Err(_) => errors += 1,
        },
        |_| {},
    );
    shared.stats.parse_errors.fetch_add(bad, Relaxed);
    shared
        .stats
        .udp_metrics_received
        .fetch_add(received, Relaxed);
    shared.stats.udp_errors.fetch_add(errors + bad, Relaxed);
}
