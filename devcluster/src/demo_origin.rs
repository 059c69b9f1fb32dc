//! The demo origin: serves sample images from a directory, as an image origin would.
//!
//! Responses carry a strong `ETag` (a digest of the bytes), `Cache-Control: public,
//! max-age=300` and honour `If-None-Match` with 304, so the cache tiers can revalidate. The
//! directory is seeded with the bundled samples (JPEG, PNG, WebP, SVG) on first start;
//! replacing a file there changes what the origin serves.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

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

async fn image(State(root): State<PathBuf>, UrlPath(name): UrlPath<String>, headers: HeaderMap) -> Response {
    let relative = Path::new(&name);
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return json_error(StatusCode::BAD_REQUEST, "bad path");
    }
    let Ok(body) = tokio::fs::read(root.join("img").join(relative)).await else {
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

async fn index(State(root): State<PathBuf>) -> Html<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("img"))
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    let items: String = names
        .iter()
        .map(|n| format!("<li><a href=\"/img/{n}\">{n}</a></li>"))
        .collect();
    Html(format!(
        "<!doctype html><title>fresco demo origin</title><h1>fresco demo origin</h1><ul>{items}</ul>"
    ))
}

/// Serves the demo origin on `addr` from `root` until the process ends.
pub async fn serve(addr: SocketAddr, root: PathBuf) -> anyhow::Result<()> {
    seed(&root)?;
    let app = Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/img/{*name}", get(image))
        .with_state(root);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
