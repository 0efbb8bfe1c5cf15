//! The traffic listeners: one socket per worker thread, all bound to the same address with
//! `SO_REUSEPORT`, so the kernel spreads new connections over the workers and no accept lock
//! or hand-off between threads exists (the model of Envoy's per-worker listeners and nginx's
//! `reuseport`).
//!
//! `SO_REUSEPORT` would also let a second proxy share a port that is already taken, silently
//! splitting its traffic; a plain probe bind first makes "address in use" an error as usual.
//! With one worker there is one ordinary socket.

use std::net::SocketAddr;

use tokio::net::TcpSocket;

/// Pending connections the kernel queues per listener (nginx's default on Linux is 511).
const BACKLOG: u32 = 1024;

/// Binds `workers` listening sockets to `addr` (port 0: one free port, shared by all) and
/// returns them unregistered, for each worker's runtime to adopt
/// (`tokio::net::TcpListener::from_std`).
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let workers = workers.max(1);
    if workers == 1 {
        return Ok(vec![listen(addr, false)?]);
    }
    if addr.port() != 0 {
        drop(listen(addr, false)?); // "address in use" when anything holds the port
    }
    let first = listen(addr, true)?;
    let shared = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(listen(shared, true)?);
    }
    Ok(listeners)
}

/// Must run inside a Tokio runtime (`listen` registers the socket before it is handed back).
fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    // `listen` registers with the current runtime's reactor; hand back a plain socket so the
    // worker that serves it registers it with its own.
    socket.listen(BACKLOG)?.into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn workers_share_one_port_and_a_taken_port_is_refused() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|port| *port == ports[0] && *port != 0));
        let taken = listeners[0].local_addr().unwrap();
        let error = bind(taken, 2).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
        let error = bind(taken, 1).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn every_worker_socket_accepts() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = listeners[0].local_addr().unwrap();
        let listeners: Vec<tokio::net::TcpListener> = listeners
            .into_iter()
            .map(|l| tokio::net::TcpListener::from_std(l).unwrap())
            .collect();
        // The kernel picks a socket per connection by hashing the client's address: enough
        // connections reach both.
        let mut seen = [false, false];
        for _ in 0..64 {
            let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let accepted = tokio::select! {
                Ok(_) = listeners[0].accept() => 0,
                Ok(_) = listeners[1].accept() => 1,
            };
            seen[accepted] = true;
            if seen == [true, true] {
                return;
            }
        }
        panic!("one socket never accepted: {seen:?}");
    }
}
