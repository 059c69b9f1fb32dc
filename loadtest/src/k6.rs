//! What runs the k6 scenarios of `loadtest/k6/`: the eval origin as a process of its own (so
//! that it can be killed), and k6's command line. `eval` and the k6 smoke tests share them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The eval origin, a process of its own so that it can be killed.
pub struct EvalOrigin {
    child: Child,
    /// Its base URL.
    pub url: String,
    listen: String,
    latency_ms: u64,
}

impl EvalOrigin {
    /// Starts `eval-origin` on `listen` (port 0: a free one) and waits until it listens.
    pub async fn start(listen: &str, latency_ms: u64) -> anyhow::Result<Self> {
        let bin = fresco_e2e::bin_dir().join("eval-origin");
        let mut child = Command::new(&bin)
            .args(["--listen", listen, "--latency-ms", &latency_ms.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("piped stdout")?).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("eval-origin did not say where it listens within 10 s")??
            .context("eval-origin exited before listening")?;
        let url = line
            .strip_prefix("LISTENING ")
            .context("eval-origin's first line")?
            .to_owned();
        let listen = url.trim_start_matches("http://").to_owned();
        Ok(Self {
            child,
            url,
            listen,
            latency_ms,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> &str {
        self.listen.rsplit(':').next().unwrap_or_default()
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts it again on the same address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        *self = Self::start(&self.listen, self.latency_ms).await?;
        Ok(())
    }
}

/// `k6 run` of `loadtest/k6/<scenario>.js` with k6's `options` and `-e KEY=VALUE` for each of
/// `env`, quiet (no progress bar: the caller shows its own).
pub fn k6_run(k6: &Path, scenario: &str, options: &[String], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(k6);
    cmd.args(["run", "--quiet"]).args(options);
    for (key, value) in env {
        cmd.args(["-e", &format!("{key}={value}")]);
    }
    cmd.arg(script(scenario)).kill_on_drop(true);
    cmd
}

/// The path of scenario `loadtest/k6/<scenario>.js`.
pub fn script(scenario: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/k6")).join(format!("{scenario}.js"))
}
