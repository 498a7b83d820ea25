//! Query strings: `key=value` pairs separated by `&`, percent-encoded (RFC 3986). `+` is a
//! plus sign, not a space: values are file paths and hex, never form text.

/// Most parameters in one query (no endpoint takes more than two).
const MAX_PARAMS: usize = 4;

/// Splits and percent-decodes a query. Repeated keys, more than [`MAX_PARAMS`] pairs, bad
/// escapes and non-UTF-8 results are errors (a message for the client).
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if out.len() == MAX_PARAMS {
            return Err(format!("more than {MAX_PARAMS} query parameters"));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k)?, percent_decode(v)?);
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("query parameter {k:?} is repeated"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                // from_str_radix alone would take "+4".
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad percent escape in the query")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "query parameter is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses() {
        assert_eq!(
            parse_query("path=/a%20b/c%2Bd+e&nonce=ab").unwrap(),
            [
                ("path".to_string(), "/a b/c+d+e".to_string()),
                ("nonce".to_string(), "ab".to_string())
            ]
        );
        assert!(parse_query("").unwrap().is_empty());
        for bad in [
            "a=%",
            "a=%4",
            "a=%zz",
            "a=%+4",
            "a=%ff",
            "a=1&a=2",
            "a&b&c&d&e",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
        // What the client's percent_encode makes of this path (its own test checks that).
        let q = "path=/srv/d%C3%A5ta/a%20b%26c%3Dd%25%2B%3F%23";
        assert_eq!(parse_query(q).unwrap()[0].1, "/srv/dåta/a b&c=d%+?#");
    }
}
