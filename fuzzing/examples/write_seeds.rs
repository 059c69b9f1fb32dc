//! Writes the seed inputs of each fuzz target into `fuzz/corpus/<target>/seed-*`: real records,
//! headers, bodies and streams, from which `make fuzz` mutates. Run it again after a format
//! changes: `cargo run -p fresco-fuzzing --example write_seeds`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use fresco_store::{Encoding, Record, StoredObject};
use pingora_cache::CacheMeta;
use pingora_http::ResponseHeader;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).join(target);
    std::fs::create_dir_all(&dir).expect("the corpus folder");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("a seed is written");
}

fn records() -> Vec<(String, Vec<u8>)> {
    let mut header = ResponseHeader::build(200, None).unwrap();
    header.insert_header("content-type", "image/png").unwrap();
    header.insert_header("etag", "\"v1\"").unwrap();
    header.insert_header("x-fresco-fill-seq", "7").unwrap();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let meta = CacheMeta::new(now + Duration::from_secs(300), now, 0, 86_400, header);
    let object = StoredObject::new(&meta, b"\x89PNG\r\n\x1a\n a small image".to_vec().into()).unwrap();
    let (entry, body) = object.into_records(|_, _, body| Some((Encoding::Identity, body)));
    let mut out = Vec::new();
    for (name, record) in [("entry", Record::Entry(entry)), ("body", Record::Body(body.unwrap()))] {
        let mut bytes = Vec::new();
        record.encode_to(&mut bytes).unwrap();
        out.push((name.to_string(), bytes));
    }
    out
}

fn main() {
    for (name, bytes) in records() {
        write("record", &name, &bytes);
    }
    for (i, target) in [
        "/img/a.jpg",
        "/img/./b/../a.jpg?b=2&a=1&utm_source=x",
        "/%7Euser/%2e%2e/a%2Fb.png?fresco=1&%75tm_source=2",
        "//a\\b;p=1?a&a=&=a",
    ]
    .iter()
    .enumerate()
    {
        write(
            "cache_key",
            &i.to_string(),
            format!("{}{target}", char::from(b'0' + i as u8 % 3)).as_bytes(),
        );
    }
    write(
        "signature",
        "good",
        fresco_protocol::signature::sign(b"s", 1_790_000_000, b"{}").as_bytes(),
    );
    write("signature", "odd", b"v1=00,t=1,v2=zz, t = 2");
    write(
        "purge_request",
        "all",
        br#"{"urls":["/img/a.jpg","https://shop.example/b.png?w=1"],"tags":["sale"],"prefixes":["/img/"],"soft":true,"wait":false}"#,
    );
    write("purge_request", "bad", br#"{"urls":["//x"],"tags":["two words"]}"#);
    write(
        "sse",
        "feed",
        b"\x05: hello\r\nretry: 250\nid: 7\nevent: change\ndata: {\"seq\":7}\ndata: more\r\n\r\nid: 8\n\n:\r",
    );
    write(
        "feed_subscription",
        "form",
        b"url=/img/a.jpg&tag=sale&last_event_id=7&age_ms=100",
    );
    write(
        "feed_subscription",
        "json",
        br#"{"urls":["/img/%C3%A9.jpg"],"tags":["t"],"last_event_id":3}"#,
    );
    println!("seeds written to fuzz/corpus/");
}
