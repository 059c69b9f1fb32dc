//! Vary end to end (RFC 9111 §4.1): a response that varies by a request header is only served
//! to requests that match it, on edges and shields alike.

use fresco_e2e::origin::TestOrigin;
use fresco_e2e::{Cluster, client, x_cache};

/// GETs `path` from edge `edge` with `headers`; returns (X-Cache, body, the response).
async fn get_with(
    cluster: &Cluster,
    edge: usize,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, String, reqwest::header::HeaderMap) {
    let mut request = client().get(cluster.edge_url(edge, path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (cache, headers) = (x_cache(&resp), resp.headers().clone());
    (cache, resp.text().await.unwrap(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cookie_gets_its_own_response_never_another_users() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/vary/cookie/profile.jpg";
    let alice = [("cookie", "user=alice")];
    let bob = [("cookie", "user=bob")];
    assert_eq!(get_with(&cluster, 0, path, &alice).await.1, "cookie=user=alice");
    let (cache, body, _) = get_with(&cluster, 0, path, &bob).await;
    assert_eq!(
        (cache.as_str(), body.as_str()),
        ("MISS", "cookie=user=bob"),
        "bob never gets alice's"
    );
    let (cache, body, _) = get_with(&cluster, 0, path, &alice).await;
    assert_eq!((cache.as_str(), body.as_str()), ("HIT", "cookie=user=alice"));
    // The other edge asks the shield, which keeps the two apart as well.
    assert_eq!(get_with(&cluster, 1, path, &bob).await.1, "cookie=user=bob");
    assert_eq!(
        get_with(&cluster, 1, path, &[]).await.1,
        "cookie=",
        "no cookie is its own variant"
    );
    assert_eq!(origin.seen(path).requests, 3, "alice, bob and nobody: one fetch each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_for_one_site_are_not_served_to_another() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/vary/origin/logo.png";
    for site in ["https://a.example", "https://b.example", "https://a.example"] {
        let (_, _, headers) = get_with(&cluster, 0, path, &[("origin", site)]).await;
        assert_eq!(headers["access-control-allow-origin"], site);
    }
    assert_eq!(origin.seen(path).requests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_avif_browser_and_a_jpeg_only_one_get_their_own_answers() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    let path = "/vary/accept/hero.jpg";
    let avif = [("accept", "image/avif,image/webp,*/*")];
    let jpeg = [("accept", "image/jpeg")];
    assert_eq!(
        get_with(&cluster, 0, path, &avif).await.1,
        "accept=image/avif,image/webp,*/*"
    );
    assert_eq!(get_with(&cluster, 0, path, &jpeg).await.1, "accept=image/jpeg");
    let (cache, body, _) = get_with(&cluster, 0, path, &avif).await;
    assert_eq!(
        (cache.as_str(), body.as_str()),
        ("HIT", "accept=image/avif,image/webp,*/*")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_star_is_never_stored_and_variants_beyond_the_cap_are_not_either() {
    let origin = TestOrigin::start().await;
    let cluster = Cluster::builder().origin(&origin.url).start();
    for _ in 0..2 {
        let resp = client()
            .get(cluster.edge_url(0, "/varystar/a.jpg"))
            .send()
            .await
            .unwrap();
        assert_eq!(x_cache(&resp), "BYPASS", "not stored");
    }
    assert_eq!(origin.seen("/varystar/a.jpg").requests, 2);

    // 16 variants of a URL are stored (cache.max_variants); the 17th is served, not stored.
    let path = "/vary/cookie/capped.jpg";
    for n in 0..17 {
        let cookie = format!("n={n}");
        get_with(&cluster, 0, path, &[("cookie", &cookie)]).await;
    }
    let (first, _, _) = get_with(&cluster, 0, path, &[("cookie", "n=0")]).await;
    assert_eq!(first, "HIT", "the first variants stay stored");
    let (beyond, body, headers) = get_with(&cluster, 0, path, &[("cookie", "n=16")]).await;
    assert_eq!(
        (beyond.as_str(), body.as_str()),
        ("BYPASS", "cookie=n=16"),
        "the 17th was not stored"
    );
    assert_eq!(header_of(&headers, "vary"), "cookie");
}

fn header_of(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}
