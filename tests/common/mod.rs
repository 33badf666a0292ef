//! Helpers shared by the integration tests that need real sockets.

use std::net::TcpListener;

/// A TCP port on `host` that nothing listens on at the moment of the call (the kernel's pick,
/// released at once): for a listener or a destination the test starts later.
pub fn free_port(host: &str) -> u16 {
    TcpListener::bind((host, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
