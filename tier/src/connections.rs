//! Client connections: how many a node takes, from one client and in all, and how long one may
//! sit without a request (the `connections:` section).
//!
//! pingora gives a connection 60 s per *read*, so a client that trickles a header a byte at a
//! time, or opens connections and says nothing, holds them for as long as it likes. The
//! [`ConnectionGate`] wraps the proxy's application and sees each connection whole:
//!
//! - **Admission.** A connection beyond `max_per_client` from its address, or beyond the total,
//!   gets a 503 with `Retry-After` and is closed; those already open go on. The total is also
//!   kept below the open-files limit, with room for upstream connections and the store's
//!   files, so that running out of descriptors refuses new clients instead of failing the
//!   fetches and disk reads of the clients already served.
//! - **Deadlines.** A new connection must finish its first request header within
//!   `header_timeout_ms`; a kept-alive connection with no request in progress is closed after
//!   `idle_timeout_ms`. Both are deadlines for the whole wait, not per read. A connection with a
//!   request in progress (a long download, a change feed) is never cut by them.
//!
//! The proxy tells the gate when a request starts and ends on a connection
//! ([`ConnectionTable::request_started`]); connections are matched by their socket cookie,
//! which the kernel never reuses (Linux; elsewhere the deadlines are off).
//!
//! On an HTTPS listener pingora completes the TLS handshake before the gate sees the
//! connection, with a handshake timeout of its own (60 s): a client that opens connections and
//! never finishes a handshake is bounded by that, not by `header_timeout_ms` or the caps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora_core::apps::ServerApp;
use pingora_core::protocols::{ALPN, Stream};
use pingora_core::server::ShutdownWatch;
use pingora_proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ConnectionsSection;
use crate::metrics::METRICS;

/// Descriptors kept free for upstream connections, the store and the admin listener: a
/// quarter of the limit, and never fewer than this.
const RESERVED_FILES: usize = 256;

/// The soft limit of open files of this process (after the node raised it).
pub fn open_files_limit() -> usize {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft.min(usize::MAX as u64) as usize)
}

/// The kernel's cookie of a socket: unique while the system runs. Linux only; elsewhere pingora
/// answers 0 for every socket, which is taken as no cookie (no deadlines, caps still apply).
fn socket_cookie(socket: &pingora_core::protocols::SocketDigest) -> Option<u64> {
    socket.socket_cookie().ok().filter(|&cookie| cookie != 0)
}

/// What a connection is doing, shared between the gate and the proxy's requests.
#[derive(Default)]
struct Activity {
    /// Requests begun on it so far.
    requests: AtomicU64,
    /// Requests in progress (several on HTTP/2).
    in_flight: AtomicU32,
    /// When the last request ended (or the connection began), in ms after the table's base.
    idle_since_ms: AtomicU64,
}

/// Every open client connection of a node, by client address and by socket cookie.
pub struct ConnectionTable {
    max_per_client: u32,
    max_total: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    retry_after_secs: u64,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, u32>>,
    by_cookie: Mutex<HashMap<u64, Arc<Activity>>>,
    base: Instant,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its client has `max_per_client` open already.
    ClientFull,
    /// The node has its total open already.
    NodeFull,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::ClientFull => "client_full",
            Self::NodeFull => "node_full",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::ClientFull => "too many connections from this address",
            Self::NodeFull => "this node has all the connections it takes",
        }
    }
}

/// An admitted connection; dropping it gives its places back.
struct Admitted<'a> {
    table: &'a ConnectionTable,
    client: Option<IpAddr>,
    cookie: Option<u64>,
    activity: Arc<Activity>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let table = self.table;
        table.total.fetch_sub(1, Ordering::AcqRel);
        METRICS.connections_open.dec();
        if let Some(client) = self.client {
            let mut per_client = table.per_client.lock();
            if let Some(open) = per_client.get_mut(&client) {
                *open -= 1;
                if *open == 0 {
                    per_client.remove(&client);
                }
            }
        }
        if let Some(cookie) = self.cookie {
            table.by_cookie.lock().remove(&cookie);
        }
    }
}

/// A connection the gate admitted, as a request on it knows it.
pub struct OnConnection {
    activity: Arc<Activity>,
    base: Instant,
}

impl OnConnection {
    /// A request begins on this connection.
    pub fn request_started(self) -> RequestOnConnection {
        self.activity.requests.fetch_add(1, Ordering::AcqRel);
        self.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestOnConnection {
            activity: self.activity,
            base: self.base,
        }
    }
}

/// A request in progress on a connection; dropping it ends the request.
pub struct RequestOnConnection {
    activity: Arc<Activity>,
    base: Instant,
}

impl RequestOnConnection {
    /// Its connection, for the next request on it.
    pub fn connection(&self) -> OnConnection {
        OnConnection {
            activity: self.activity.clone(),
            base: self.base,
        }
    }
}

impl Drop for RequestOnConnection {
    fn drop(&mut self) {
        let now = self.base.elapsed().as_millis() as u64;
        self.activity.idle_since_ms.store(now, Ordering::Release);
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionTable {
    /// The table for `section`, with the total kept below `open_files` (the process's limit).
    pub fn new(section: &ConnectionsSection, open_files: usize, retry_after_secs: u64) -> Self {
        let reserve = (open_files / 4).max(RESERVED_FILES);
        let max_total = section.max_total.min(open_files.saturating_sub(reserve).max(1));
        if max_total < section.max_total {
            tracing::warn!(
                configured = section.max_total,
                open_files,
                max_total,
                "connections.max_total lowered to stay below the open files limit"
            );
        }
        Self {
            max_per_client: section.max_per_client,
            max_total,
            header_timeout: Duration::from_millis(section.header_timeout_ms),
            idle_timeout: Duration::from_millis(section.idle_timeout_ms),
            retry_after_secs,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            by_cookie: Mutex::new(HashMap::new()),
            base: Instant::now(),
        }
    }

    /// The most connections the node takes in all (after the open-files limit).
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    fn admit(&self, client: Option<IpAddr>, cookie: Option<u64>) -> Result<Admitted<'_>, Refusal> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::NodeFull);
        }
        if let Some(client) = client {
            let mut per_client = self.per_client.lock();
            let open = per_client.entry(client).or_default();
            if *open >= self.max_per_client {
                drop(per_client);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::ClientFull);
            }
            *open += 1;
        }
        METRICS.connections_open.inc();
        let activity = Arc::new(Activity::default());
        activity
            .idle_since_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Release);
        if let Some(cookie) = cookie {
            self.by_cookie.lock().insert(cookie, activity.clone());
        }
        Ok(Admitted {
            table: self,
            client,
            cookie,
            activity,
        })
    }

    /// A request begins on `session`'s connection; it ends when the returned value is dropped.
    /// `None` for a connection the gate does not know (a subrequest, say). The next request
    /// on a kept-alive HTTP/1 connection starts from [`RequestOnConnection::connection`]
    /// instead, without a system call or a lock.
    pub fn request_started(&self, session: &Session) -> Option<RequestOnConnection> {
        if session.subrequest_ctx.is_some() {
            // A background revalidation, on its client's digest: not a request of the client.
            return None;
        }
        let cookie = socket_cookie(session.digest()?.socket_digest.as_ref()?)?;
        let activity = self.by_cookie.lock().get(&cookie)?.clone();
        Some(
            OnConnection {
                activity,
                base: self.base,
            }
            .request_started(),
        )
    }

    /// When `activity`'s connection is due to be closed if nothing happens: `Err` with the
    /// phase if that time has passed.
    fn deadline(&self, activity: &Activity) -> Result<Instant, &'static str> {
        let now = Instant::now();
        if activity.in_flight.load(Ordering::Acquire) > 0 {
            // Busy: look again after an idle timeout; it cannot expire sooner than that.
            return Ok(now + self.idle_timeout);
        }
        let (limit, phase) = match activity.requests.load(Ordering::Acquire) {
            0 => (self.header_timeout, "header"),
            _ => (self.idle_timeout, "idle"),
        };
        let idle_since = self.base + Duration::from_millis(activity.idle_since_ms.load(Ordering::Acquire));
        let due = idle_since + limit;
        if due <= now { Err(phase) } else { Ok(due) }
    }
}

/// The proxy's application behind admission and deadlines (see the module's documentation).
pub struct ConnectionGate<A> {
    app: Arc<A>,
    table: &'static ConnectionTable,
}

impl<A> ConnectionGate<A> {
    /// Gates `app` with `table`.
    pub fn new(app: A, table: &'static ConnectionTable) -> Self {
        Self {
            app: Arc::new(app),
            table,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionGate<A> {
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let socket = stream.get_socket_digest();
        let client = socket
            .as_ref()
            .and_then(|s| s.peer_addr())
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let cookie = socket.as_deref().and_then(socket_cookie);
        let admitted = match self.table.admit(client, cookie) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                METRICS.connection_refused(refusal.label());
                refuse(stream, refusal, self.table.retry_after_secs).await;
                return None;
            }
        };
        if cookie.is_none() {
            // Its requests cannot be told apart from silence: caps only, no deadlines.
            let reusable = self.app.process_new(stream, shutdown).await;
            drop(admitted);
            return reusable;
        }
        let serve = self.app.process_new(stream, shutdown);
        tokio::pin!(serve);
        loop {
            let due = match self.table.deadline(&admitted.activity) {
                Ok(due) => due,
                Err(phase) => {
                    METRICS.connection_timed_out(phase);
                    return None;
                }
            };
            tokio::select! {
                reusable = &mut serve => return reusable,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

/// Answers a refused HTTP/1 connection with a 503 before closing it (an HTTP/2 one is just
/// closed). What the client sent is read first, for at most a moment, so that closing does not
/// reset the connection under the answer.
async fn refuse(mut stream: Stream, refusal: Refusal, retry_after_secs: u64) {
    if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
        return;
    }
    let mut request = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut request)).await;
    let body = format!("{{\"error\":\"{}\"}}\n", refusal.message());
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {retry_after_secs}\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_per_client: u32, max_total: usize, open_files: usize) -> ConnectionTable {
        let section = ConnectionsSection {
            max_per_client,
            max_total,
            ..ConnectionsSection::default()
        };
        ConnectionTable::new(&section, open_files, 1)
    }

    #[test]
    fn a_client_and_the_node_are_capped_and_a_closed_connection_frees_its_place() {
        let table = table(2, 3, 1 << 20);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = table.admit(Some(a), Some(1)).unwrap();
        let _second = table.admit(Some(a), Some(2)).unwrap();
        assert_eq!(table.admit(Some(a), Some(3)).err(), Some(Refusal::ClientFull));
        let _third = table.admit(Some(b), Some(4)).unwrap();
        assert_eq!(table.admit(Some(b), Some(5)).err(), Some(Refusal::NodeFull));
        drop(first);
        let _again = table
            .admit(Some(a), Some(6))
            .expect("a closed connection gives its place back");
        assert_eq!(table.total.load(Ordering::Acquire), 3);
        assert!(table.per_client.lock().get(&a).is_some_and(|n| *n == 2));
    }

    #[test]
    fn the_total_stays_below_the_open_files_limit() {
        assert_eq!(table(10, 100_000, 1024).max_total(), 768);
        assert_eq!(table(10, 100_000, 300).max_total(), 44);
        assert_eq!(table(10, 500, 1 << 20).max_total(), 500);
    }

    #[test]
    fn a_silent_connection_expires_after_the_header_timeout_and_an_idle_one_after_the_idle_timeout() {
        let section = ConnectionsSection {
            header_timeout_ms: 0,
            idle_timeout_ms: 60_000,
            ..ConnectionsSection::default()
        };
        let table = ConnectionTable::new(&section, 1 << 20, 1);
        let admitted = table.admit(None, None).unwrap();
        assert_eq!(table.deadline(&admitted.activity), Err("header"));
        admitted.activity.requests.fetch_add(1, Ordering::AcqRel);
        admitted.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        assert!(table.deadline(&admitted.activity).is_ok(), "busy: never due");
        drop(RequestOnConnection {
            activity: admitted.activity.clone(),
            base: table.base,
        });
        let due = table.deadline(&admitted.activity).unwrap();
        assert!(
            due > Instant::now() + Duration::from_secs(59),
            "idle: due an idle timeout after the request"
        );
    }
}
