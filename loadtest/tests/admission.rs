//! `cache.admission` on a real edge: a full memory tier keeps a new image from its second
//! request on, so that images asked for once do not push out the ones asked for again.

use fresco_e2e::LoneEdge;
use fresco_loadtest::trace::{Trace, TraceOrigin, TracedRequest, replay};

/// Sixteen images of 100 KB: more than a 1 MiB memory tier holds.
fn filling() -> Vec<TracedRequest> {
    (0..16).map(|id| TracedRequest { id, size: 100_000 }).collect()
}

/// The `X-Cache` hits of three requests for one new image, once memory is full.
async fn hits_of_a_new_image(admission: &str) -> Vec<bool> {
    let origin = TraceOrigin::start(200_000).await.unwrap();
    let edge = LoneEdge::start_with_cache(&origin.url, &format!("memory: 1MiB, admission: {admission}"), "", None);
    replay(&edge.url, &Trace { requests: filling() }, |_| {}).await.unwrap();
    let mut hits = Vec::new();
    for _ in 0..3 {
        let once = Trace {
            requests: vec![TracedRequest { id: 99, size: 100_000 }],
        };
        hits.push(replay(&edge.url, &once, |_| {}).await.unwrap().hits == 1);
    }
    hits
}

#[tokio::test]
async fn a_full_edge_keeps_a_new_image_from_its_second_request_on() {
    assert_eq!(
        hits_of_a_new_image("second-request").await,
        [false, false, true],
        "the first fill displaces nothing; the second is kept"
    );
}

#[tokio::test]
async fn with_admission_all_a_full_edge_keeps_a_new_image_at_once() {
    assert_eq!(hits_of_a_new_image("all").await, [false, true, true]);
}
