//! Header fields that belong to one connection, not to the response (RFC 9110 §7.6.1): the
//! fields an upstream names in `Connection` are neither stored nor passed on (RFC 9111 §3.1).
//! pingora writes `Connection` itself for each client connection.

use http::header;
use pingora_http::ResponseHeader;

/// Whether `name` (lowercase) is one of RFC 9110 §7.6.1's fields of a connection, which no
/// response stored or merged may keep.
pub fn is_connection_field(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

/// Removes from `resp` every field its `Connection` header names.
pub fn remove_connection_listed(resp: &mut ResponseHeader) {
    let listed: Vec<String> = resp
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty() && name != "close" && name != "keep-alive" && name != "connection")
        .collect();
    for name in listed {
        resp.remove_header(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_named_in_connection_are_removed_and_others_kept() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for (name, value) in [("connection", "a, B"), ("a", "1"), ("b", "2"), ("c", "3")] {
            resp.append_header(name, value).unwrap();
        }
        remove_connection_listed(&mut resp);
        assert!(!resp.headers.contains_key("a") && !resp.headers.contains_key("b"));
        assert_eq!(resp.headers["c"], "3");
    }
}
