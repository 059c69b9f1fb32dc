//! The client against tiny axum servers on loopback sockets that stand in for edges: what it
//! sends (`If-None-Match`, `Last-Event-ID`, POST for long subscriptions) and how it fails over.
//! The real edges are exercised in `tests/tests/client.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fresco_client::{Change, Client, Source, WatchEvent};
use futures_util::StreamExt;

/// What a stand-in edge saw.
#[derive(Default)]
struct Seen {
    /// `method path if-none-match last-event-id` per request.
    requests: Mutex<Vec<String>>,
    /// Bodies of POST requests.
    bodies: Mutex<Vec<String>>,
}

impl Seen {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

type Handler = fn(&Request) -> Response;

async fn edge(handler: Handler) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .fallback(move |State(seen): State<Arc<Seen>>, req: Request| async move {
            let response = {
                let h = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                seen.requests.lock().unwrap().push(format!(
                    "{} {} {} {}",
                    req.method(),
                    req.uri().path(),
                    h("if-none-match"),
                    h("last-event-id")
                ));
                handler(&req)
            };
            if req.method() == "POST" {
                let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
                seen.bodies
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            response
        })
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// A base URL on which nothing listens.
fn dead_edge() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// `/etag/…`: ETag `"v1"` honouring `If-None-Match`; `/immutable/…`: immutable;
/// `/missing`: 404; `/broken`: 503.
fn images(req: &Request) -> Response {
    let path = req.uri().path();
    let kind = path.split('/').nth(1).unwrap_or("");
    let matches = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"\"v1\"");
    let cache_control = match kind {
        "etag" => "public, max-age=60",
        "immutable" => "public, max-age=31536000, immutable",
        "broken" => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => return (StatusCode::NOT_FOUND, "{\"error\":\"not found\"}").into_response(),
    };
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "image/png")], format!("body of {path}")).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    h.insert("surrogate-key", HeaderValue::from_static("product-7 all"));
    response
}

fn always_503(_: &Request) -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

#[tokio::test]
async fn a_local_copy_is_revalidated_with_if_none_match_and_served_on_304() {
    let (url, seen) = edge(images).await;
    let client = Client::builder().edge(&url).build().unwrap();
    let first = client.get("/etag/a.png").await.unwrap();
    assert_eq!((first.status.as_u16(), first.source), (200, Source::Network));
    assert_eq!(first.etag.as_deref(), Some("\"v1\""));
    assert_eq!(first.content_type.as_deref(), Some("image/png"));
    let second = client.get("/etag/a.png").await.unwrap();
    assert_eq!((second.status.as_u16(), second.source), (200, Source::Revalidated));
    assert!(second.from_cache());
    assert_eq!(second.body, first.body);
    assert_eq!(
        seen.requests(),
        vec!["GET /etag/a.png - -", "GET /etag/a.png \"v1\" -"],
        "the second request is conditional"
    );
}

#[tokio::test]
async fn an_immutable_copy_is_served_without_asking_and_the_disk_cache_outlives_the_client() {
    let (url, seen) = edge(images).await;
    let dir = tempfile::tempdir().unwrap();
    let client = Client::builder().edge(&url).cache_dir(dir.path()).build().unwrap();
    assert_eq!(client.get("/immutable/a.png").await.unwrap().source, Source::Network);
    assert_eq!(client.get("/etag/b.png").await.unwrap().source, Source::Network);
    drop(client);
    let client = Client::builder().edge(&url).cache_dir(dir.path()).build().unwrap();
    let again = client.get("/immutable/a.png").await.unwrap();
    assert_eq!(
        (again.source, &again.body[..]),
        (Source::Local, &b"body of /immutable/a.png"[..])
    );
    assert_eq!(client.get("/etag/b.png").await.unwrap().source, Source::Revalidated);
    assert_eq!(seen.requests().len(), 3, "{:?}", seen.requests());
}

#[tokio::test]
async fn a_dead_edge_or_a_5xx_fails_over_and_the_edge_that_answered_is_preferred() {
    let (good, good_seen) = edge(images).await;
    let (failing, failing_seen) = edge(always_503).await;
    let client = Client::builder()
        .edges([dead_edge(), failing.clone(), good.clone()])
        .build()
        .unwrap();
    let response = client.get("/etag/a.png").await.unwrap();
    assert_eq!(response.status.as_u16(), 200);
    assert_eq!(response.edge.as_deref(), Some(good.as_str()));
    assert_eq!(client.preferred_edge(), good);
    client.get("/etag/b.png").await.unwrap();
    assert_eq!(failing_seen.requests().len(), 1, "the preferred edge is asked first");
    assert_eq!(good_seen.requests().len(), 2);
}

#[tokio::test]
async fn a_4xx_is_the_answer_and_no_edge_at_all_is_an_error() {
    let (first, _) = edge(images).await;
    let (second, second_seen) = edge(images).await;
    let client = Client::builder().edges([&first, &second]).build().unwrap();
    let response = client.get("/missing").await.unwrap();
    assert_eq!(response.status.as_u16(), 404);
    assert!(second_seen.requests().is_empty(), "a 4xx is not failed over");

    let client = Client::builder()
        .edges([dead_edge(), dead_edge()])
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let error = client.get("/etag/a.png").await.unwrap_err();
    assert!(matches!(error, fresco_client::Error::Unavailable { .. }), "{error}");

    let (failing, _) = edge(always_503).await;
    let client = Client::builder().edge(&failing).build().unwrap();
    assert_eq!(
        client.get("/x").await.unwrap().status.as_u16(),
        503,
        "the last 5xx is returned"
    );
    assert!(Client::builder().build().is_err(), "no edge");
    assert!(Client::builder().edge("not a url").build().is_err());
}

fn sse(chunks: &[&str], then_hang: bool) -> Response {
    let chunks: Vec<Result<Bytes, std::io::Error>> = chunks.iter().map(|c| Ok(Bytes::from(c.to_string()))).collect();
    let stream = futures_util::stream::iter(chunks);
    let body = if then_hang {
        Body::from_stream(stream.chain(futures_util::stream::pending()))
    } else {
        Body::from_stream(stream)
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

fn change(seq: u64, url: &str) -> String {
    format!(
        "event: change\nid: {seq}\ndata: {{\"seq\":{seq},\"url\":\"{url}\",\"etag\":null,\"tags\":[],\"soft\":false}}\n\n"
    )
}

/// Says hello at 10, sends 11 (/a) and the first of the two changes of 12, then goes silent.
fn edge_that_goes_silent(req: &Request) -> Response {
    if req.uri().path() != "/_fresco/events" {
        return images(req);
    }
    let hello = "retry: 1000\n\nevent: hello\nid: 10\ndata: {\"seq\":10,\"node\":\"edge-a\"}\n\n".to_string();
    let (c11, c12) = (change(11, "/etag/a.png"), change(12, "/etag/a.png"));
    // The second change is cut across two chunks on purpose.
    let (c12a, c12b) = c12.split_at(20);
    sse(&[&hello, &c11, c12a, c12b], true)
}

/// Replays the log after `Last-Event-ID`: 11 (/a), 12 (/a and /b), 13 (/b); then hello at 13.
fn edge_that_replays(req: &Request) -> Response {
    if req.uri().path() != "/_fresco/events" {
        return images(req);
    }
    let from: u64 = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(13);
    let log = [
        (11, "/etag/a.png"),
        (12, "/etag/a.png"),
        (12, "/etag/b.png"),
        (13, "/etag/b.png"),
    ];
    let mut chunks: Vec<String> = log
        .iter()
        .filter(|(seq, _)| *seq > from)
        .map(|(seq, url)| change(*seq, url))
        .collect();
    chunks.push("event: hello\nid: 13\ndata: {\"seq\":13,\"node\":\"edge-b\"}\n\n: keepalive\nid: 13\n\n".into());
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    sse(&refs, true)
}

#[tokio::test]
async fn watch_resumes_on_the_next_edge_and_delivers_each_change_once_in_order() {
    let (a, a_seen) = edge(edge_that_goes_silent).await;
    let (b, b_seen) = edge(edge_that_replays).await;
    let client = Client::builder()
        .edges([&a, &b])
        .feed_read_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    client.get("/etag/a.png").await.unwrap();
    client.get("/etag/b.png").await.unwrap();
    assert!(client.is_cached("/etag/a.png") && client.is_cached("/etag/b.png"));
    let mut watch = client.watch(["/etag/a.png", "/etag/b.png"], ["product-7"]);
    let mut got = Vec::new();
    while got.len() < 7 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("events within 10 s")
            .expect("the stream goes on")
            .expect("no error");
        got.push(event);
    }
    let change = |seq, url: &str| {
        WatchEvent::Change(Change {
            seq,
            url: Some(url.into()),
            etag: None,
            tags: vec![],
            soft: false,
        })
    };
    assert_eq!(
        got,
        vec![
            WatchEvent::Connected {
                edge: a.clone(),
                node: "edge-a".into(),
                seq: 10
            },
            change(11, "/etag/a.png"),
            change(12, "/etag/a.png"),
            WatchEvent::Disconnected {
                edge: a.clone(),
                reason: "nothing received for 500ms".into()
            },
            change(12, "/etag/b.png"),
            change(13, "/etag/b.png"),
            WatchEvent::Connected {
                edge: b.clone(),
                node: "edge-b".into(),
                seq: 13
            },
        ]
    );
    // The second edge was asked to resume below the purge whose changes may have been cut.
    assert!(
        b_seen.requests().contains(&"GET /_fresco/events - 11".to_string()),
        "{:?}",
        b_seen.requests()
    );
    assert!(a_seen.requests().contains(&"GET /_fresco/events - -".to_string()));
    assert!(!client.is_cached("/etag/a.png") && !client.is_cached("/etag/b.png"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch.next())
            .await
            .is_err(),
        "nothing more"
    );
}

fn hello_only(req: &Request) -> Response {
    sse(
        &[&format!(
            "event: hello\nid: 1\ndata: {{\"seq\":1,\"node\":\"{}\"}}\n\n",
            req.method()
        )],
        true,
    )
}

#[tokio::test]
async fn a_long_subscription_is_posted_and_a_refusal_ends_the_stream() {
    let (url, seen) = edge(hello_only).await;
    let client = Client::builder().edge(&url).build().unwrap();
    let urls: Vec<String> = (0..300)
        .map(|i| format!("/img/a-rather-long-name-{i:04}.jpg"))
        .collect();
    let mut watch = client.watch(urls, ["t"]);
    let first = watch.next().await.unwrap().unwrap();
    assert!(
        matches!(first, WatchEvent::Connected { ref node, .. } if node == "POST"),
        "{first:?}"
    );
    let body = seen.bodies.lock().unwrap()[0].clone();
    assert_eq!(body.matches("url=").count(), 300);
    assert!(
        body.contains("url=%2Fimg%2Fa-rather-long-name-0299.jpg&tag=t&age_ms="),
        "{body}"
    );

    let (refusing, _) = edge(|_| (StatusCode::BAD_REQUEST, "{\"error\":\"bad url\"}").into_response()).await;
    let client = Client::builder().edge(&refusing).build().unwrap();
    let mut watch = client.watch(["bad"], Vec::<String>::new());
    let error = watch.next().await.unwrap().unwrap_err();
    assert!(error.to_string().contains("bad url"), "{error}");
    assert!(watch.next().await.is_none(), "the stream ends");
}

/// Cannot replay: hello at 5, then a reset at 9, a late change at 9 and a new one at 10.
fn edge_that_resets(req: &Request) -> Response {
    if req.uri().path() != "/_fresco/events" {
        return images(req);
    }
    let hello = "event: hello\nid: 5\ndata: {\"seq\":5,\"node\":\"edge-r\"}\n\n";
    let reset = "event: reset\nid: 9\ndata: {\"seq\":9,\"reason\":\"history\"}\n\n";
    sse(
        &[hello, reset, &change(9, "/etag/a.png"), &change(10, "/etag/a.png")],
        true,
    )
}

#[tokio::test]
async fn a_5xx_feed_is_skipped_and_a_reset_drops_everything_followed() {
    let (failing, _) = edge(always_503).await;
    let (resetting, _) = edge(edge_that_resets).await;
    let client = Client::builder().edges([&failing, &resetting]).build().unwrap();
    // Fetched through the second edge; the first answers 503 to everything.
    client.get("/etag/a.png").await.unwrap();
    client.get("/etag/b.png").await.unwrap();
    let mut watch = client.watch(["/etag/a.png"], ["product-7"]);
    let mut got = Vec::new();
    while got.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("events within 10 s")
            .unwrap()
            .unwrap();
        if !matches!(event, WatchEvent::Disconnected { .. }) {
            got.push(event);
        }
    }
    assert!(
        matches!(&got[0], WatchEvent::Connected { node, .. } if node == "edge-r"),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        WatchEvent::Reset(fresco_client::Reset {
            seq: 9,
            reason: "history".into()
        })
    );
    assert!(
        matches!(&got[2], WatchEvent::Change(c) if c.seq == 10),
        "9 is covered by the reset: {got:?}"
    );
    // The followed URL went, and so did the other URL through the followed tag.
    assert!(!client.is_cached("/etag/a.png"));
    assert!(!client.is_cached("/etag/b.png"));
}
