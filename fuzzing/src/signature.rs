//! The webhook signature header (`fresco_protocol::signature`), which anyone can send.
//!
//! Promises: parsing any header is an answer, never a panic; a parsed signature verifies only
//! what it signed.

use fresco_protocol::signature::{Signature, sign};

/// The bytes are an `X-Fresco-Signature` header value.
pub fn run(data: &[u8]) {
    let Ok(header) = std::str::from_utf8(data) else { return };
    if let Ok(signature) = Signature::parse(header) {
        let _ = signature.verifies(b"a-webhook-secret", data);
    }
    // Whatever the body, its own signature verifies and names its time.
    let t = data.len() as u64 * 7919;
    let signed = Signature::parse(&sign(b"a-webhook-secret", t, data)).expect("a made signature parses");
    assert_eq!(signed.t, t);
    assert!(signed.verifies(b"a-webhook-secret", data));
    assert!(!signed.verifies(b"another-secret", data));
}
