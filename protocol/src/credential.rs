//! Node credentials: what an edge or shield presents to purge-api's node protocol (`/v1/lease`,
//! `/v1/ack`, `/v1/log`, `/v1/members`), apart from the tokens that purge.
//!
//! A credential is `<node id>.<hex HMAC-SHA256(node key, "fresco-node-v1\n" + node id)>`.
//! purge-api holds only the node keys and recomputes the MAC, so a node that joins needs no
//! change to purge-api's configuration (`purge-api credential --node ID` prints its credential),
//! and a credential speaks for exactly one node id: it cannot lease, ack or list as another.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// What the MAC is over, before the node id; the version lets the scheme change.
const CONTEXT: &[u8] = b"fresco-node-v1\n";

fn mac(key: &[u8], node: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(CONTEXT);
    mac.update(node.as_bytes());
    mac
}

/// The credential of `node` under `key`.
pub fn derive(key: &[u8], node: &str) -> String {
    format!("{node}.{}", hex::encode(mac(key, node).finalize().into_bytes()))
}

/// The node a credential speaks for, if one of `keys` made it; compared in constant time.
pub fn verify<'a>(keys: impl IntoIterator<Item = &'a [u8]>, credential: &str) -> Option<String> {
    let (node, tag) = credential.split_once('.')?;
    let tag = hex::decode(tag).ok()?;
    if node.is_empty() {
        return None;
    }
    keys.into_iter()
        .any(|key| mac(key, node).verify_slice(&tag).is_ok())
        .then(|| node.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_speaks_for_its_node_under_its_key_only() {
        let key = b"node-key-node-key-1".as_slice();
        let edge = derive(key, "edge-1");
        assert!(edge.starts_with("edge-1."));
        assert_eq!(verify([key], &edge).as_deref(), Some("edge-1"));
        assert_eq!(verify([b"another-node-key-2".as_slice()], &edge), None);
        // Rotation: a credential made with the previous key still verifies while it is listed.
        assert_eq!(
            verify([b"another-node-key-2".as_slice(), key], &edge).as_deref(),
            Some("edge-1")
        );
        let forged = edge.replacen("edge-1", "edge-2", 1);
        assert_eq!(verify([key], &forged), None, "the MAC binds the node id");
        for bad in ["", ".", "edge-1", "edge-1.zz", ".00", "edge-1.00"] {
            assert_eq!(verify([key], bad), None, "{bad}");
        }
    }
}
