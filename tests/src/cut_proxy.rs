//! A TCP relay on loopback that can be cut: a partition between one process and a service,
//! when network namespaces would cut every process on the machine at once.
//!
//! Cut, it relays nothing more in either direction and answers new connections with silence,
//! holding every socket open: what a process sees when packets are dropped, not refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A relay to one address.
pub struct CutProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
}

impl CutProxy {
    /// Relays connections on a new loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let relay_cut = cut.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if relay_cut.load(Ordering::Acquire) {
                    held.push(client);
                    continue;
                }
                tokio::spawn(relay(client, target, relay_cut.clone()));
            }
        });
        Self { addr, cut }
    }

    /// `http://` and the relay's address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on nothing passes.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
    }
}

async fn relay(client: TcpStream, target: SocketAddr, cut: Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pass(client_read, server_write, &cut),
        pass(server_read, client_write, &cut)
    );
}

async fn pass(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf, cut: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::Acquire) {
            // Dropped, and the sockets held open and silent until the test ends.
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
