//! One connection per etcd member, calls sent to the leader.
//!
//! Why not the client's own balancing over every endpoint: a follower forwards each write to
//! the leader and asks it for every linearizable read, one more hop on each call; and a member
//! that has just been cut off from the others holds a call until it times out, so that a
//! balancer that goes back to it spends the budget there. Here every call goes to the member
//! last seen leading; one that fails moves the next call on to the next member at once and
//! asks every member who leads now.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, TlsOptions};
use tokio::sync::{Notify, OnceCell};

use super::timed;
use crate::config::EtcdConfig;

/// Pause between two attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How much longer than `timeout_ms` a call waits while a majority of members answers and
/// what failed is what an election explains ([`maybe_electing`]): they are electing a leader,
/// which on a loaded machine takes a few rounds. With fewer answering no leader can be
/// elected, and the call fails at `timeout_ms`.
const ELECTION_WAIT: u32 = 4;
/// How often the leader is looked for while nothing fails (a leader may move on its own:
/// `etcdctl move-leader`, a member restarted).
const LEADER_CHECK: Duration = Duration::from_secs(1);

/// Connects to the etcd cluster of `config`.
pub async fn connect(config: &EtcdConfig) -> Result<Etcd, String> {
    let budget = Duration::from_millis(config.timeout_ms);
    // A call may go to a member that has just died or been cut off, and hang until it
    // notices (its election timeout): a quarter of the budget leaves time to try others.
    let per_call = budget / 4;
    let mut options = ConnectOptions::new()
        .with_connect_timeout(per_call)
        .with_timeout(per_call)
        // etcd refuses pings more often than every 5 s (`--grpc-keepalive-min-time`).
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2))
        .with_keep_alive_while_idle(true)
        // A member cut off from the leader answers nothing rather than old data.
        .with_require_leader(true)
        // etcd's tokens expire after 5 minutes unused: a watch started again after a quiet
        // spell, or a member's connection after its outage, would be refused for good.
        .with_auto_token_refresh(true);
    if let Some(user) = &config.user {
        let password = std::fs::read_to_string(&user.password_file)
            .map_err(|e| format!("control_plane.etcd.user.password_file: {e}"))?;
        options = options.with_user(&user.name, password.trim_end());
    }
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("control_plane.etcd.ca_file: {e}"))?;
        options = options.with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(pem)));
    }
    // The balanced client serves the watches (a broken one is started again, anywhere) and
    // proves at the start that etcd takes these credentials.
    let balanced = Client::connect(&config.endpoints, Some(options.clone()))
        .await
        .map_err(|e| format!("connecting to etcd {:?}: {e}", config.endpoints))?;
    let members = config
        .endpoints
        .iter()
        .map(|url| Member {
            url: url.clone(),
            client: OnceCell::new(),
        })
        .collect();
    let etcd = Etcd {
        balanced,
        per_call,
        shared: Arc::new(Shared {
            members,
            options,
            leader: AtomicUsize::new(0),
            answering: AtomicUsize::new(0),
            look_for_leader: Notify::new(),
        }),
        budget,
    };
    etcd.shared.find_leader().await;
    tokio::spawn(follow_leader(Arc::downgrade(&etcd.shared)));
    Ok(etcd)
}

/// A connection to etcd whose calls are tried again, within a budget, while etcd cannot answer
/// (a member down, a leader being elected): `timeout_ms`, or [`ELECTION_WAIT`] times that while
/// a majority of members answers. Beyond the budget the caller gets the error.
///
/// Tried again means possibly done twice: every write fresco makes is either a transaction
/// whose comparisons fail the second time (and say what happened) or idempotent.
#[derive(Clone)]
pub struct Etcd {
    balanced: Client,
    shared: Arc<Shared>,
    budget: Duration,
    /// One attempt's share of the budget.
    per_call: Duration,
}

struct Shared {
    members: Vec<Member>,
    options: ConnectOptions,
    /// The member calls go to.
    leader: AtomicUsize,
    /// How many members answered when last asked who leads (if only to say no one does).
    answering: AtomicUsize,
    look_for_leader: Notify,
}

/// One etcd member, connected at its first call (a member down at the start is no error).
struct Member {
    url: String,
    client: OnceCell<Client>,
}

impl Shared {
    async fn client(&self, at: usize) -> Result<Client, etcd_client::Error> {
        let member = &self.members[at];
        member
            .client
            .get_or_try_init(|| Client::connect([&member.url], Some(self.options.clone())))
            .await
            .cloned()
    }

    /// The call at member `at` failed: the next call goes to the next member, unless another
    /// caller moved on already.
    fn move_on_from(&self, at: usize) {
        let next = (at + 1) % self.members.len();
        let _ = self
            .leader
            .compare_exchange(at, next, Ordering::Relaxed, Ordering::Relaxed);
        self.look_for_leader.notify_one();
    }

    /// Asks every member who leads and sends calls to the one that says it does itself (of
    /// two, as just after a partition, the later term's). Nothing changes when none does:
    /// an election is on, and failures move calls on meanwhile.
    async fn find_leader(&self) {
        let asked = (0..self.members.len()).map(|at| async move {
            let mut client = self.client(at).await?;
            timed("status", client.status()).await
        });
        let answers = futures_util::future::join_all(asked).await;
        let answering = answers.iter().filter(|answer| answered(answer)).count();
        self.answering.store(answering, Ordering::Relaxed);
        let leader = answers.iter().enumerate().filter_map(|(at, answer)| {
            let status = answer.as_ref().ok()?;
            let own_id = status.header()?.member_id();
            (status.leader() == own_id).then_some((status.raft_term(), at))
        });
        if let Some((_, at)) = leader.max() {
            self.leader.store(at, Ordering::Relaxed);
        }
    }

    fn majority_answers(&self) -> bool {
        self.answering.load(Ordering::Relaxed) > self.members.len() / 2
    }
}

/// Whether `e` may be an election under way: no leader yet, a leader just changed, a member
/// out of reach or silent. Another error a member answers with (a full database, a slow disk)
/// is not waited out past `timeout_ms`.
fn maybe_electing(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) if status.message().starts_with("etcdserver:") => {
            status.message().contains("no leader") || status.message().contains("leader changed")
        }
        _ => true,
    }
}

/// Whether a member answered, if only with an error of its own ("etcdserver: no leader"),
/// rather than being unreachable.
fn answered<T>(answer: &Result<T, etcd_client::Error>) -> bool {
    match answer {
        Ok(_) => true,
        Err(etcd_client::Error::GRpcStatus(status)) => status.message().starts_with("etcdserver:"),
        Err(_) => false,
    }
}

/// Looks for the leader once per [`LEADER_CHECK`], and at once after a call failed, for as
/// long as the connection is in use.
async fn follow_leader(shared: std::sync::Weak<Shared>) {
    // A failure while no one waits leaves a permit (`notify_one`): it is not missed.
    while let Some(shared) = shared.upgrade() {
        let _ = tokio::time::timeout(LEADER_CHECK, shared.look_for_leader.notified()).await;
        shared.find_leader().await;
    }
}

fn worth_retrying(e: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match e {
        Error::GRpcStatus(status) => !matches!(
            status.code(),
            tonic::Code::InvalidArgument
                | tonic::Code::NotFound
                | tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::FailedPrecondition
                | tonic::Code::OutOfRange
        ),
        Error::TransportError(_) | Error::IoError(_) => true,
        _ => false,
    }
}

impl Etcd {
    /// A client balanced over every member, for watches (which are started again on their own).
    pub(crate) fn client(&self) -> Client {
        self.balanced.clone()
    }

    /// `call` on the leader, tried again (on the next member) while time is left.
    pub(super) async fn retried<T, F>(
        &self,
        operation: &'static str,
        call: impl Fn(Client) -> F,
    ) -> Result<T, etcd_client::Error>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let started = tokio::time::Instant::now();
        let (deadline, election_deadline) = (started + self.budget, started + self.budget * ELECTION_WAIT);
        // Until when to keep trying, after a failure that an election may explain or not.
        let until = |electing: bool| match electing && self.shared.majority_answers() {
            true => election_deadline,
            false => deadline,
        };
        let mut electing = true;
        loop {
            let at = self.shared.leader.load(Ordering::Relaxed);
            // Connecting included (with a user, a connection authenticates first), and at
            // most two calls' share: callers queued behind a connection to a member that does
            // not answer move on rather than wait their turn.
            let left = until(electing)
                .saturating_duration_since(tokio::time::Instant::now())
                .min(self.per_call * 2);
            let attempt = async {
                let client = self.shared.client(at).await?;
                timed(operation, call(client)).await
            };
            let result = match tokio::time::timeout(left, attempt).await {
                Ok(result) => result,
                Err(_) => Err(etcd_client::Error::GRpcStatus(tonic::Status::deadline_exceeded(
                    format!("no answer within {left:?}"),
                ))),
            };
            match result {
                Err(e) if worth_retrying(&e) => {
                    self.shared.move_on_from(at);
                    electing = maybe_electing(&e);
                    if tokio::time::Instant::now() + RETRY_PAUSE >= until(electing) {
                        return Err(e);
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_saying_it_has_no_leader_answered_one_out_of_reach_did_not() {
        let said = |message: &str| Err::<(), _>(etcd_client::Error::GRpcStatus(tonic::Status::unavailable(message)));
        assert!(answered(&said("etcdserver: no leader")));
        assert!(answered(&Ok(())));
        assert!(!answered(&said("error trying to connect: tcp connect error")));
        assert!(!answered::<()>(&Err(etcd_client::Error::IoError(
            std::io::ErrorKind::TimedOut.into()
        ))));
    }

    #[test]
    fn only_what_an_election_explains_is_waited_out() {
        let status = |message: &str| etcd_client::Error::GRpcStatus(tonic::Status::unavailable(message));
        assert!(maybe_electing(&status("etcdserver: no leader")));
        assert!(maybe_electing(&status("etcdserver: leader changed")));
        assert!(maybe_electing(&status("error trying to connect")));
        assert!(!maybe_electing(&status("etcdserver: mvcc: database space exceeded")));
        assert!(!maybe_electing(&status("etcdserver: request timed out")));
    }
}
