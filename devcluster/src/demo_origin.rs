//! The demo origin: serves sample images from a directory, as an image origin would.
//!
//! Responses carry a strong `ETag` (a digest of the bytes), `Cache-Control: public,
//! max-age=300` and honour `If-None-Match` with 304, so the cache tiers can revalidate. The
//! directory is seeded with the bundled samples (JPEG, PNG, WebP, SVG) on first start;
//! replacing a file there changes what the origin serves.
//!
//! It also serves the live demo: `/gallery.html`, a page of every image that loads the edge's
//! `/_fresco/live.js` (open it *through an edge*), and `POST /_demo/change/{name}`, which
//! saves a new version of an image and then tells purge-api with a signed webhook, as a real
//! origin would. Its answer is purge-api's, with the times the webhook was sent and answered
//! for benchmarks (`x-demo-purge-sent-ms`, `x-demo-purge-answered-ms`: Unix milliseconds with
//! three decimals).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::demo_images;

/// Where the demo origin sends its purge webhooks.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// purge-api's base URL.
    pub purge_api: String,
    /// The secret shared with purge-api (`webhook_secrets`).
    pub secret: String,
}

/// What the handlers share.
struct Origin {
    root: PathBuf,
    webhook: Option<Webhook>,
    http: reqwest::Client,
    /// The version the next change writes; starts from the clock so that a restarted origin
    /// does not write a version it wrote before.
    next_version: AtomicU64,
    /// One change at a time, so files written and purges sent stay in the same order; holds
    /// the Unix second each webhook body was last signed at.
    changing: tokio::sync::Mutex<HashMap<String, u64>>,
}

/// The bundled sample images: (file name, bytes).
pub const SAMPLES: [(&str, &[u8]); 4] = [
    ("sunset.jpg", include_bytes!("../assets/img/sunset.jpg")),
    ("badge.png", include_bytes!("../assets/img/badge.png")),
    ("tile.webp", include_bytes!("../assets/img/tile.webp")),
    ("logo.svg", include_bytes!("../assets/img/logo.svg")),
];

/// Writes the samples into `root/img/` where they are missing.
pub fn seed(root: &Path) -> std::io::Result<()> {
    let img = root.join("img");
    std::fs::create_dir_all(&img)?;
    for (name, bytes) in SAMPLES {
        let path = img.join(name);
        if !path.exists() {
            std::fs::write(path, bytes)?;
        }
    }
    Ok(())
}

/// The content type of a file name.
pub fn content_type(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// A strong ETag of a body.
pub fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", &blake3::hash(body).to_hex()[..20])
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Whether `name` stays inside the image directory.
fn is_plain_path(name: &str) -> bool {
    Path::new(name).components().all(|c| matches!(c, Component::Normal(_)))
}

async fn image(State(origin): State<Arc<Origin>>, UrlPath(name): UrlPath<String>, headers: HeaderMap) -> Response {
    if !is_plain_path(&name) {
        return json_error(StatusCode::BAD_REQUEST, "bad path");
    }
    let Ok(body) = tokio::fs::read(origin.root.join("img").join(&name)).await else {
        return json_error(StatusCode::NOT_FOUND, "no such image");
    };
    let etag = etag_of(&body);
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, content_type(&name))], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

/// The file names in the image directory, sorted.
fn image_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("img"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

async fn index(State(origin): State<Arc<Origin>>) -> Html<String> {
    let names = image_names(&origin.root);
    let items: String = names
        .iter()
        .map(|n| format!("<li><a href=\"/img/{n}\">{n}</a></li>"))
        .collect();
    Html(format!(
        "<!doctype html><title>fresco demo origin</title><h1>fresco demo origin</h1><ul>{items}</ul>\
         <p><a href=\"/gallery.html\">the live gallery</a> (open it through an edge)</p>"
    ))
}

/// The gallery: every image at a fixed size (`width`/`height`, so a swap never moves the
/// layout), the edge's `live.js`, and a log of the swaps it makes.
async fn gallery(State(origin): State<Arc<Origin>>) -> Response {
    let figures: String = image_names(&origin.root)
        .iter()
        .map(|n| {
            format!(
                "<figure><img src=\"/img/{n}\" width=\"320\" height=\"200\" alt=\"{n}\">\
                 <figcaption><code>devcluster change-image {n}</code></figcaption></figure>\n"
            )
        })
        .collect();
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><meta charset=\"utf-8\">\n\
         <title>fresco live gallery</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}\
         figure{{display:inline-block;margin:0 1em 1em 0}}\
         img{{object-fit:contain;background:#eee}}#log{{font-size:.9em;color:#555}}</style>\n\
         <script src=\"/_fresco/live.js\" defer></script>\n\
         <h1>fresco live gallery</h1>\n\
         <p>Change an image (<code>devcluster change-image NAME</code>): it is replaced here \
         without reloading the page, once the purge is applied.</p>\n\
         {figures}<ol id=\"log\"></ol>\n\
         <script>document.addEventListener('fresco:swap', e => {{\
         const li = document.createElement('li');\
         li.textContent = new Date().toLocaleTimeString() + ' ' + e.detail.url + ' (purge ' + e.detail.seq + ')';\
         document.getElementById('log').prepend(li); }});</script>\n</html>\n"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page,
    )
        .into_response()
}

fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// Unix time in milliseconds, to the microsecond: benchmarks compare it with the browser's
/// `performance.timeOrigin + performance.now()`.
fn unix_ms_precise() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `POST /_demo/change/{name}`: a new version of the image, then the signed purge webhook.
async fn change(State(origin): State<Arc<Origin>>, UrlPath(name): UrlPath<String>) -> Response {
    if !is_plain_path(&name) {
        return json_error(StatusCode::BAD_REQUEST, "bad path");
    }
    let path = origin.root.join("img").join(&name);
    if !path.is_file() {
        return json_error(StatusCode::NOT_FOUND, "no such image");
    }
    let mut signed = origin.changing.lock().await;
    let body = serde_json::json!({ "urls": [format!("/img/{name}")] }).to_string();
    // purge-api accepts each signature once, and a signature covers the second and the body:
    // the same purge twice in one second waits for the next second, as a real origin must.
    signed.retain(|_, t| *t >= unix_secs());
    if signed.contains_key(&body) {
        let into_second = unix_ms() % 1000;
        tokio::time::sleep(std::time::Duration::from_millis(1000 - into_second)).await;
    }
    let version = origin.next_version.fetch_add(1, Ordering::Relaxed);
    let Some(bytes) = demo_images::regenerate(&name, version) else {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the demo can rewrite .jpg, .png, .webp and .svg images only",
        );
    };
    // Write then rename: a request in between reads the old version or the new, whole.
    let tmp = path.with_extension("demo-tmp");
    if let Err(e) = tokio::fs::write(&tmp, &bytes).await {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("writing {name}: {e}"));
    }
    if let Err(e) = tokio::fs::rename(&tmp, &path).await {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("writing {name}: {e}"));
    }
    let Some(webhook) = &origin.webhook else {
        let body = serde_json::json!({ "changed": name, "purge": null }).to_string();
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    };
    let now = unix_secs();
    signed.insert(body.clone(), now);
    let signature = fresco_protocol::signature::sign(webhook.secret.as_bytes(), now, body.as_bytes());
    let sent = unix_ms_precise();
    let answer = origin
        .http
        .post(format!("{}/v1/purge", webhook.purge_api))
        .header(fresco_protocol::signature::HEADER, signature)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let answer = match answer {
        Ok(resp) => {
            let status = resp.status().as_u16();
            resp.bytes().await.map(|b| (status, b))
        }
        Err(e) => Err(e),
    };
    let answered = unix_ms_precise();
    let (status, purge_body) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            return json_error(StatusCode::BAD_GATEWAY, &format!("purge-api did not answer: {e}"));
        }
    };
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
        [(header::CONTENT_TYPE, "application/json")],
        purge_body,
    )
        .into_response();
    let h = response.headers_mut();
    for (name, ms) in [("x-demo-purge-sent-ms", sent), ("x-demo-purge-answered-ms", answered)] {
        let value = HeaderValue::from_str(&format!("{ms:.3}")).expect("a number is a valid header");
        h.insert(name, value);
    }
    response
}

/// Serves the demo origin on `addr` from `root` until the process ends, over HTTPS with `tls`.
/// With a `webhook`, a change of an image is followed by a signed purge to purge-api, sent
/// with `http`.
pub async fn serve(
    addr: SocketAddr,
    root: PathBuf,
    webhook: Option<Webhook>,
    tls: Option<fresco_tls::ServerFiles>,
    http: reqwest::ClientBuilder,
) -> anyhow::Result<()> {
    seed(&root)?;
    let origin = Arc::new(Origin {
        root,
        webhook,
        http: http.build()?,
        next_version: AtomicU64::new(unix_ms()),
        changing: tokio::sync::Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/", get(index))
        .route("/gallery.html", get(gallery))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/img/{*name}", get(image))
        .route("/_demo/change/{*name}", post(change))
        .with_state(origin);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    match tls {
        Some(files) => {
            let config = files.server_config(&[b"http/1.1"])?;
            axum::serve(fresco_tls::TlsListener::new(listener, config)?, app).await?
        }
        None => axum::serve(listener, app).await?,
    }
    Ok(())
}
