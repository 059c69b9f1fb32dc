//! Work a node runs on a thread of its own, apart from pingora's: following the purge log and
//! renewing the lease, probing shields. Such work must go on however busy the proxy's threads
//! are, or a loaded node would lose its lease or its view of the shields.

use std::future::Future;

/// Runs `work` on a new thread named `name`, on a current-thread tokio runtime of its own.
pub fn spawn_thread<F>(name: &str, work: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(work());
        })
        .unwrap_or_else(|e| panic!("spawning the {name} thread: {e}"));
}
