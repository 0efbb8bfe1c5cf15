//! Free TCP ports on 127.0.0.1: bind port 0, read the port, close.
//!
//! The kernel may hand the same port to another process between the close and the binary's bind;
//! that race is accepted. Within this test process no port is handed out twice, so two sandboxes
//! of parallel tests never collide, and a port reserved as "closed" stays closed.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_addr() -> SocketAddr {
    const ATTEMPTS: usize = 64;
    for _ in 0..ATTEMPTS {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("local_addr of a bound listener");
        drop(listener);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed_out
            .get_or_insert_with(HashSet::new)
            .insert(addr.port())
        {
            return addr;
        }
    }
    panic!("no unused free port after {ATTEMPTS} attempts");
}
