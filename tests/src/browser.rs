//! A real headless Chromium for the tests of `live.js`, driven over the WebDriver protocol
//! (`chromedriver`, Debian's `chromium` and `chromium-driver`; `scripts/setup.sh test`
//! installs them).
//!
//! Only what the tests use: a session, navigation, and running scripts (through fantoccini).
//! Each browser gets its own profile directory, so no cache or state leaks from one run into
//! another.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Where Debian installs the browser and its driver.
const CHROMIUM: &str = "/usr/bin/chromium";
/// See [`CHROMIUM`].
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; dropping it ends the session and the driver.
pub struct Browser {
    client: fantoccini::Client,
    driver: Child,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium. Panics, saying how to install them, when
    /// they are missing: a test of the browser must not pass without one.
    pub async fn start() -> Self {
        Self::start_trusting(&[]).await
    }

    /// As [`Browser::start`], with servers whose public key has one of `pins`
    /// ([`fresco_tls::ServerFiles::public_key_pin`]) trusted as if their CA were.
    pub async fn start_trusting(pins: &[String]) -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: the browser tests need Debian's chromium and \
                 chromium-driver (`scripts/setup.sh test`, or `make test`, installs them)"
            );
        }
        let port = crate::free_port();
        // Its own process group, with the Chromium it starts: the drop ends them together.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("a temp dir");
        let pinned = format!("--ignore-certificate-errors-spki-list={}", pins.join(","));
        let mut args = vec![pinned.as_str()];
        args.extend([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
        ]);
        let user_data_dir = format!("--user-data-dir={}", profile.path().display());
        args.push(&user_data_dir);
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
        let mut builder = fantoccini::ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let started = Instant::now();
        let client = loop {
            match builder.connect(&base).await {
                Ok(client) => break client,
                // Until chromedriver listens; a browser that cannot start fails the same way.
                Err(e) if started.elapsed() > Duration::from_secs(20) => {
                    panic!("no Chromium session from chromedriver within 20 s: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let id = client.session_id().await.ok().flatten().unwrap_or_default();
        Self {
            session: format!("{base}/session/{id}"),
            client,
            driver,
            _profile: profile,
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("WebDriver goto {url}: {e}"));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns what it returns.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.client
            .execute(script, arguments(args))
            .await
            .unwrap_or_else(|e| panic!("WebDriver execute: {e}"))
    }

    /// Runs `script`, whose last argument is a callback, and returns what it passes to it.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.client
            .execute_async(script, arguments(args))
            .await
            .unwrap_or_else(|e| panic!("WebDriver execute_async: {e}"))
    }

    /// Polls `script` (which returns a truthy value when done) until it does, or panics
    /// with `what` after `timeout`. Returns the truthy value.
    pub async fn wait_for(&self, script: &str, timeout: Duration, what: &str) -> Value {
        let started = Instant::now();
        loop {
            let value = self.execute(script, json!([])).await;
            if !(value.is_null() || value == json!(false) || value == json!(0)) {
                return value;
            }
            assert!(started.elapsed() < timeout, "{what}: not within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A digest of the pixels of the image whose `alt` is `alt`, as displayed (drawn on a
    /// canvas at its natural size): two versions of an image have different digests.
    pub async fn image_digest(&self, alt: &str) -> String {
        let value = self.execute(PIXEL_DIGEST, json!([alt])).await;
        value.as_str().unwrap_or_default().to_string()
    }
}

/// A script's arguments: the elements of a JSON array, or one value.
fn arguments(args: Value) -> Vec<Value> {
    match args {
        Value::Array(values) => values,
        value => vec![value],
    }
}

/// FNV-1a over the RGBA pixels of `img[alt=arguments[0]]`, with its size; "" before it loads.
const PIXEL_DIGEST: &str = r#"
const img = document.querySelector('img[alt="' + arguments[0] + '"]');
if (!img || !img.complete || !img.naturalWidth) return "";
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth;
canvas.height = img.naturalHeight;
const g = canvas.getContext("2d");
g.drawImage(img, 0, 0);
const data = g.getImageData(0, 0, canvas.width, canvas.height).data;
let h = 2166136261;
for (let i = 0; i < data.length; i++) { h ^= data[i]; h = Math.imul(h, 16777619); }
return (h >>> 0).toString(16) + "@" + canvas.width + "x" + canvas.height;
"#;

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium (blocking, as a drop cannot await); whatever is
        // left of the driver's process group is killed.
        delete(&self.session);
        let group = Pid::from_raw(self.driver.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

/// `DELETE url` over a plain socket, with a short timeout.
fn delete(url: &str) {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(stream, "DELETE {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").is_ok() {
        let _ = stream.read(&mut [0u8; 256]);
    }
}

/// What the demo origin answered to `POST /_demo/change/{name}`: purge-api's answer to its
/// signed webhook, and when the webhook was sent and answered.
pub struct DemoChange {
    /// purge-api's status.
    pub status: u16,
    /// purge-api's JSON answer (`seq`, `acked`, …).
    pub body: Value,
    /// When the origin sent the webhook, Unix milliseconds.
    pub purge_sent_ms: f64,
    /// When purge-api answered it, Unix milliseconds.
    pub purge_answered_ms: f64,
}

/// Has the cluster's demo origin save a new version of `/img/<name>` and purge it.
pub async fn change_demo_image(cluster: &crate::ClusterInfo, name: &str) -> DemoChange {
    let resp = fresco_tls::trusting(cluster.ca.as_deref())
        .expect("the cluster's CA")
        .build()
        .expect("a client")
        .post(format!("{}/_demo/change/{name}", cluster.origin))
        .send()
        .await
        .expect("the demo origin answers");
    let ms = |header: &str| crate::header(&resp, header).parse().unwrap_or(f64::NAN);
    let (purge_sent_ms, purge_answered_ms) = (ms("x-demo-purge-sent-ms"), ms("x-demo-purge-answered-ms"));
    let status = resp.status().as_u16();
    DemoChange {
        status,
        body: resp.json().await.unwrap_or_default(),
        purge_sent_ms,
        purge_answered_ms,
    }
}
