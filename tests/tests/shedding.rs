//! Load shedding on the request path, from outside: a flood of misses to a slow origin gets
//! 503 with `Retry-After` at once beyond what the origin is allowed, instead of every miss
//! slowing down, and hits keep being served meanwhile.

use std::time::{Duration, Instant};

use fresco_e2e::origin::TestOrigin;
use fresco_e2e::{LoneEdge, client, x_cache};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_beyond_the_upstream_limit_are_shed_at_once_and_hits_are_not() {
    let origin = TestOrigin::start().await;
    let edge = LoneEdge::start(
        &origin.url,
        "",
        "shedding: { upstream_concurrency: 4, upstream_queue: 4, retry_after_secs: 2 }",
    );
    let http = client();
    let hot = format!("{}/img/hot.jpg", edge.url);
    http.get(&hot).send().await.unwrap();

    let flood: Vec<_> = (0..100)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{}/slow/{i}.jpg", edge.url));
            tokio::spawn(async move {
                let started = Instant::now();
                let resp = http.get(url).send().await.unwrap();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap();
                (status, retry_after, body, started.elapsed())
            })
        })
        .collect();
    // Hits while the flood waits on the origin: served from the cache, not queued behind it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..20 {
        let started = Instant::now();
        let resp = http.get(&hot).send().await.unwrap();
        assert_eq!(x_cache(&resp), "HIT");
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(250),
            "a hit took {took:?} during the flood"
        );
    }
    let (mut shed, mut a_shed_path) = (0, None);
    for (i, answer) in flood.into_iter().enumerate() {
        let (status, retry_after, body, took) = answer.await.unwrap();
        match status {
            200 => {}
            503 => {
                shed += 1;
                a_shed_path = Some(format!("/slow/{i}.jpg"));
                assert_eq!(retry_after.as_deref(), Some("2"));
                assert!(body.contains("saturated"), "{body}");
                assert!(took < Duration::from_millis(250), "shed after {took:?}, not at once");
            }
            other => panic!("a miss got {other}: {body}"),
        }
    }
    let fetched: usize = (0..100).map(|i| origin.seen(&format!("/slow/{i}.jpg")).requests).sum();
    assert!(shed >= 80, "only {shed} of 100 misses were shed");
    assert!(
        fetched <= 20,
        "the origin got {fetched} fetches, beyond its 4 slots and 4 waiting"
    );
    assert_eq!(fetched + shed, 100, "each miss was either fetched once or shed");
    // A shed miss stored nothing: asked again, it is fetched.
    let path = a_shed_path.expect("some miss was shed");
    let again = http.get(format!("{}{path}", edge.url)).send().await.unwrap();
    assert_eq!((again.status().as_u16(), x_cache(&again)), (200, "MISS".to_string()));
    assert_eq!(origin.seen(&path).requests, 1);
}
