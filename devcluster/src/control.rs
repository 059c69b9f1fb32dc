//! `devcluster join` and `devcluster leave`: asking the running devcluster to add or remove a
//! node, so that the node is its child (stopped with the cluster) and `cluster.json` stays the
//! one description of the cluster.
//!
//! The running devcluster listens on `DIR/control.sock`. A request is one JSON line,
//! `{"join":"edge"}` or `{"leave":"edge-3"}`; the answer is one JSON line, `{"node":{…}}` or
//! `{}` on success, `{"error":"…"}` otherwise. One request is served at a time.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::cluster::Running;
use crate::state::{NodeInfo, StateDir};

/// A request on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Start one more node of this role (`edge` or `shield`).
    Join(String),
    /// Stop this node gracefully and remove it.
    Leave(String),
}

/// The answer to a [`Request`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    /// The node that joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeInfo>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Listens on the state dir's control socket (replacing one a dead devcluster left).
pub fn listen(state: &StateDir) -> anyhow::Result<UnixListener> {
    let path = state.control_socket();
    let _ = std::fs::remove_file(&path);
    UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))
}

/// Serves one connection: reads its request, carries it out, answers.
pub async fn serve(stream: UnixStream, running: &mut Running) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read).read_line(&mut line).await.is_err() {
        return;
    }
    let answer = match serde_json::from_str::<Request>(&line) {
        Err(e) => Answer {
            error: Some(format!(
                "not a control request ({e}): send {{\"join\":\"edge\"}} or {{\"leave\":\"edge-3\"}}"
            )),
            ..Default::default()
        },
        Ok(Request::Join(role)) => match running.join(&role).await {
            Ok(node) => Answer {
                node: Some(node),
                ..Default::default()
            },
            Err(e) => Answer {
                error: Some(format!("{e:#}")),
                ..Default::default()
            },
        },
        Ok(Request::Leave(id)) => match running.leave(&id).await {
            Ok(()) => Answer::default(),
            Err(e) => Answer {
                error: Some(format!("{e:#}")),
                ..Default::default()
            },
        },
    };
    let mut text = serde_json::to_string(&answer).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

/// Sends `request` to the devcluster running in `state_dir` and returns its answer.
pub async fn ask(state_dir: &Path, request: &Request) -> anyhow::Result<Answer> {
    let path = state_dir.join("control.sock");
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "connecting to {} (is devcluster running on this state dir?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    if line.is_empty() {
        bail!("devcluster closed the control connection without answering");
    }
    let answer: Answer = serde_json::from_str(&line)?;
    if let Some(error) = &answer.error {
        bail!("{error}");
    }
    Ok(answer)
}
