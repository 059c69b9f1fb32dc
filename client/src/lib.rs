//! The Rust client of fresco's edges.
//!
//! - [`Client::get`] fetches a path from the first edge that answers, failing over on
//!   connection errors and 5xx, and keeps a local cache (memory, optionally disk) that it
//!   revalidates with `If-None-Match`.
//! - [`Client::watch`] follows URLs and tags on the change feed (`docs/feed.md`), delivering
//!   each change once and in order across edge failures, and drops changed objects from the
//!   local cache.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fresco_client::Error> {
//! use futures_util::StreamExt;
//!
//! let client = fresco_client::Client::builder()
//!     .edge("http://127.0.0.1:8080")
//!     .edge("http://127.0.0.1:8081")
//!     .cache_dir("/tmp/fresco-client")
//!     .build()?;
//! let image = client.get("/img/a.jpg").await?;
//! println!("{} bytes, {:?}", image.body.len(), image.source);
//! let mut changes = client.watch(["/img/a.jpg"], ["product-7"]);
//! while let Some(event) = changes.next().await {
//!     println!("{:?}", event?);
//! }
//! # Ok(()) }
//! ```
//!
//! See `docs/client.md` for the semantics and the command line tool.

mod cache;
mod client;
pub mod sse;
mod watch;

pub use cache::Entry;
pub use client::{Client, ClientBuilder, ClientConfig, Error, Progress, Response, Source};
pub use watch::{Change, Reset, Watch, WatchEvent};
