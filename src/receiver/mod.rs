//! The built-in listeners, one per go-carbon receiver: plaintext over TCP (`[tcp]`) and UDP
//! (`[udp]`), and carbon's pickle protocol (`[pickle]`).
//!
//! Every listener feeds the same core path as `Carbon::add_lines`: the plaintext rules of
//! [`crate::parse::plain`], names through `Shared::canonical_name`, and the same counters, plus
//! go-carbon's per-receiver `metricsReceived` / `errors` / `active`. Stream listeners wait for
//! room in a full cache instead of dropping (the socket stops being read, so TCP flow control
//! slows the sender); UDP cannot push back, so a full cache there counts the point as overflow.
//!
//! Connections get one thread each with a 128 KiB stack: 10,000 idle connections cost about
//! 1.3 GiB of address space but little memory (tested in `tests/receivers.rs`).

mod pickle;
mod tcp;
mod udp;

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::engine::Shared;
use crate::error::{Error, Result};
use crate::stats::Stats;

pub use pickle::PickleReceiver;
pub use tcp::TcpReceiver;
pub use udp::UdpReceiver;

/// How often a blocked reader looks at the shutdown flag.
const POLL: Duration = Duration::from_millis(200);

/// Stack of a connection thread: the readers keep their buffers on the heap.
const CONN_STACK: usize = 128 * 1024;

/// The stream listeners' threads still running, so that close can wait for them to end
/// (first the accept loops, which take their backlogs, then the connections) without polling.
#[derive(Debug, Default)]
pub(crate) struct StreamThreads {
    counts: parking_lot::Mutex<StreamCounts>,
    ended: parking_lot::Condvar,
}

#[derive(Debug, Default)]
struct StreamCounts {
    accepting: usize,
    connections: usize,
}

impl StreamThreads {
    fn change(&self, f: impl FnOnce(&mut StreamCounts)) {
        let mut c = self.counts.lock();
        f(&mut c);
        if c.accepting == 0 || c.connections == 0 {
            self.ended.notify_all();
        }
    }

    /// Waits until `done` holds for the counts or `deadline` passes; true if it holds.
    fn wait(&self, deadline: Instant, done: impl Fn(&StreamCounts) -> bool) -> bool {
        let mut c = self.counts.lock();
        self.ended.wait_while_until(&mut c, |c| !done(c), deadline);
        done(&c)
    }
}

/// Addresses the `[udp]` and `[pickle]` listeners are bound to (`[tcp]`'s is the first of
/// `Shared::listen_addrs`).
#[derive(Debug, Default)]
pub(crate) struct Bound {
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) pickle: Option<SocketAddr>,
}

/// Resolves a `listen` value; go-carbon's `:port` means every IPv4 address.
fn resolve(section: &str, listen: &str) -> Result<Vec<SocketAddr>> {
    let spec = if listen.starts_with(':') {
        format!("0.0.0.0{listen}")
    } else {
        listen.to_string()
    };
    let addrs: Vec<SocketAddr> = spec
        .to_socket_addrs()
        .map_err(|e| Error::invalid(format!("[{section}] listen = {listen:?}: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::invalid(format!(
            "[{section}] listen = {listen:?}: no address"
        )));
    }
    Ok(addrs)
}

/// Binds a TCP `listen` value of `[section]`; returns the listener and its bound address.
pub(crate) fn bind_tcp(section: &str, listen: &str) -> Result<(TcpListener, SocketAddr)> {
    let addrs = resolve(section, listen)?;
    let listener = TcpListener::bind(&addrs[..])
        .map_err(|e| Error::io(format!("[{section}] listen {listen}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io(format!("[{section}] listener"), e))?;
    Ok((listener, local))
}

/// Binds `[section] listen` and starts its accept thread ([`accept_loop`]), counting the
/// thread in `shared.accepting` first so that close waits for its backlog. Returns the bound
/// address (the caller records it for close and for `Carbon::*_addr`) and the thread.
pub(crate) fn start_stream(
    shared: &Arc<Shared>,
    section: &'static str,
    listen: &str,
    active: fn(&Stats) -> &AtomicU64,
    serve: fn(TcpStream, &Shared),
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let (listener, local) = bind_tcp(section, listen)?;
    shared.streams.change(|c| c.accepting += 1);
    let s = shared.clone();
    let accept = format!("carbonlite-{section}-accept");
    let h = std::thread::Builder::new()
        .name(accept.clone())
        .spawn(move || {
            accept_loop(
                listener,
                s,
                format!("carbonlite-{section}-conn"),
                active,
                serve,
            )
        })
        .map_err(|e| {
            shared.streams.change(|c| c.accepting -= 1);
            Error::io(accept, e)
        })?;
    Ok((local, h))
}

/// Starts `[udp]` and `[pickle]` when enabled; returns their long-lived threads.
pub(crate) fn start_udp_and_pickle(shared: &Arc<Shared>) -> Result<Vec<JoinHandle<()>>> {
    let mut threads = Vec::new();
    if shared.config.udp.enabled {
        threads.extend(UdpReceiver::start(shared.clone())?);
    }
    if shared.config.pickle.enabled {
        threads.extend(PickleReceiver::start(shared.clone())?);
    }
    Ok(threads)
}

/// Stops accepting and tells connections to finish: wakes the accept threads by connecting to
/// them, then waits for every connection thread to end.
pub(crate) fn stop_listeners(shared: &Shared) {
    shared.receivers_stopping.store(true, Relaxed);
    let mut wake: Vec<SocketAddr> = shared.listen_addrs.lock().clone();
    wake.extend(shared.receiver_addrs.lock().pickle);
    for addr in wake {
        let mut a = addr;
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&a, Duration::from_secs(1));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    // First the accept threads finish taking their backlogs, then the connections drain.
    let streams = &shared.streams;
    if streams.wait(deadline, |c| c.accepting == 0) {
        streams.wait(deadline, |c| c.connections == 0);
    }
}

/// A stream listener's accept loop, shared by `[tcp]` and `[pickle]`: each connection gets a
/// thread (`thread_name`, small stack) running `serve`, counted in `active`. [`start_stream`]
/// raised `shared.accepting` before spawning this loop; it is lowered once, on close, every connection
/// the kernel had already accepted has been taken (they are clients' data too; the wake-up
/// connection of `stop_listeners` is among them).
pub(crate) fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    thread_name: String,
    active: fn(&Stats) -> &AtomicU64,
    serve: fn(TcpStream, &Shared),
) {
    let ended = move |s: &Shared| {
        active(&s.stats).fetch_sub(1, Relaxed);
        s.streams.change(|c| c.connections -= 1);
    };
    let spawn_conn = |stream: TcpStream| {
        active(&shared.stats).fetch_add(1, Relaxed);
        shared.streams.change(|c| c.connections += 1);
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(thread_name.clone())
            .stack_size(CONN_STACK)
            .spawn(move || {
                serve(stream, &s);
                ended(&s);
            });
        if spawned.is_err() {
            // The stream was moved into the failed spawn and is closed: the sender sees a reset.
            ended(&shared);
        }
    };
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => spawn_conn(stream),
            // EMFILE and friends: back off instead of spinning on a full fd table.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
        if shared.receivers_stopping.load(Relaxed) {
            if listener.set_nonblocking(true).is_ok() {
                while let Ok((stream, _)) = listener.accept() {
                    let _ = stream.set_nonblocking(false);
                    spawn_conn(stream);
                }
            }
            break;
        }
    }
    shared.streams.change(|c| c.accepting -= 1);
}
