//! A TCP accept loop shared by the query servers (carbonserver HTTP and carbonlink): one
//! thread accepts, each connection gets a small-stack thread, at most `max_conns` at once.
//! Stopping wakes the accept call by connecting to it and waits for connections to finish.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a blocked connection looks at the stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// What connection threads can see of their listener.
#[derive(Debug, Default)]
pub(crate) struct ListenerState {
    stopping: AtomicBool,
    active: AtomicUsize,
}

impl ListenerState {
    /// Set once the owner is closing: connections finish the request in hand and return.
    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Relaxed)
    }
}

/// Serves one accepted connection until it closes or the listener stops.
pub(crate) type ConnHandler = Arc<dyn Fn(TcpStream, &ListenerState) + Send + Sync>;
/// Called instead of the handler when `max_conns` connections are already open.
pub(crate) type Refuser = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// A running listener; `stop` (or drop) ends it.
pub(crate) struct Listener {
    name: &'static str,
    addr: SocketAddr,
    state: Arc<ListenerState>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish()
    }
}

impl Listener {
    /// Binds `listen` (go-carbon's `:port` means every IPv4 address) and starts accepting.
    /// `section` names the config section in errors.
    pub(crate) fn start(
        name: &'static str,
        section: &str,
        listen: &str,
        max_conns: usize,
        handler: ConnHandler,
        refuse: Refuser,
    ) -> Result<Listener> {
        let (listener, addr) = crate::receiver::bind_tcp(section, listen)?;
        let state = Arc::new(ListenerState::default());
        let s = state.clone();
        let accept = std::thread::Builder::new()
            .name(format!("carbonlite-{name}-accept"))
            .spawn(move || accept_loop(name, listener, s, max_conns, handler, refuse))
            .map_err(|e| Error::io(format!("carbonlite-{name}-accept"), e))?;
        Ok(Listener {
            name,
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// The bound address (useful with port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, then waits (at most 10 s) for open connections to finish.
    pub(crate) fn stop(&mut self) {
        if self.state.stopping.swap(true, Relaxed) {
            return;
        }
        let mut a = self.addr;
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&a, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.state.active.load(Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    state: Arc<ListenerState>,
    max_conns: usize,
    handler: ConnHandler,
    refuse: Refuser,
) {
    for conn in listener.incoming() {
        if state.stopping() {
            break;
        }
        let Ok(stream) = conn else {
            // EMFILE and friends: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if state.active.load(Relaxed) >= max_conns {
            refuse(stream);
            continue;
        }
        state.active.fetch_add(1, Relaxed);
        let s = state.clone();
        let h = handler.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("carbonlite-{name}-conn"))
            .stack_size(256 * 1024)
            .spawn(move || {
                // A bug in a handler costs the connection, never the listener.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h(stream, &s)));
                s.active.fetch_sub(1, Relaxed);
            });
        if spawned.is_err() {
            state.active.fetch_sub(1, Relaxed);
        }
    }
}
