//! What a peer saw of one request.

/// One request as the peer received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request method, e.g. `"GET"`.
    pub method: String,
    /// The path of the request target, without the query.
    pub path: String,
    /// The raw (still percent-encoded) query, without the `?`, if there was one.
    pub query: Option<String>,
    /// Every header in the order received; names are lowercase. Values that
    /// are not UTF-8 are converted lossily.
    pub headers: Vec<(String, String)>,
    /// The request body. If it exceeded the peer's body limit it is cut at
    /// the limit (and the peer answered 413).
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (invalid UTF-8 is replaced).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, or `None` if it is not valid JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a
    /// space). `Some("")` for a parameter given without a value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every query parameter, percent-decoded, in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        let Some(query) = &self.query else {
            return Vec::new();
        };
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(name), percent_decode(value))
            })
            .collect()
    }

    /// The path followed by `?query` when there is a query.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text; malformed escapes are
/// kept as written.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_query(query: &str) -> Recorded {
        Recorded {
            method: "GET".into(),
            path: "/".into(),
            query: Some(query.into()),
            headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
            body: Vec::new(),
        }
    }

    #[test]
    fn query_params_are_decoded() {
        let r = with_query("cursor=a%2Fb&q=hello+world&flag&bad=%zz%4");
        assert_eq!(r.query_param("cursor").as_deref(), Some("a/b"));
        assert_eq!(r.query_param("q").as_deref(), Some("hello world"));
        assert_eq!(r.query_param("flag").as_deref(), Some(""));
        assert_eq!(r.query_param("bad").as_deref(), Some("%zz%4"));
        assert_eq!(r.query_param("missing"), None);
        assert_eq!(
            r.path_and_query(),
            "/?cursor=a%2Fb&q=hello+world&flag&bad=%zz%4"
        );
    }

    #[test]
    fn headers_are_case_insensitive() {
        let r = with_query("");
        assert_eq!(r.header("X-A"), Some("1"));
        assert_eq!(r.header_all("x-a"), vec!["1", "2"]);
        assert_eq!(r.header("x-b"), None);
    }
}
