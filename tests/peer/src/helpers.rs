//! Ready-made handlers.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::{Recorded, Reply};

/// A handler answering its n-th call with the n-th reply; the last reply
/// repeats once the list is used up. Each handler counts its own calls, so
/// give each route its own sequence.
///
/// ```
/// # use allama_test_peer::{Reply, sequence};
/// let flaky = sequence(vec![Reply::status(503), Reply::rate_limited(1), Reply::text(200, "ok")]);
/// ```
///
/// # Panics
/// If `replies` is empty.
pub fn sequence(replies: Vec<Reply>) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    assert!(!replies.is_empty(), "sequence needs at least one reply");
    let calls = AtomicUsize::new(0);
    move |_| {
        let n = calls.fetch_add(1, Ordering::Relaxed);
        replies[n.min(replies.len() - 1)].clone()
    }
}

/// A handler serving `items` in pages of `page_size`, cursor-style:
/// `{"data": [...], "meta": {"next_cursor": "..." | null}}`.
///
/// The page starts at the `cursor` query parameter (absent or empty: the
/// first page). Cursors are opaque to clients (today the offset of the next
/// item, as text); an unknown one is answered `400 {"error": "invalid cursor"}`.
///
/// # Panics
/// If `page_size` is 0.
pub fn paginated(
    items: Vec<Value>,
    page_size: usize,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    assert!(page_size > 0, "paginated needs a page size of at least 1");
    move |req| {
        let start = match req.query_param("cursor").as_deref() {
            None | Some("") => 0,
            Some(cursor) => match cursor.parse::<usize>() {
                Ok(start) if start < items.len() => start,
                _ => return Reply::error(400, "invalid cursor"),
            },
        };
        let end = start.saturating_add(page_size).min(items.len());
        let next_cursor = (end < items.len()).then(|| end.to_string());
        Reply::json(
            200,
            json!({ "data": &items[start..end], "meta": { "next_cursor": next_cursor } }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: Option<&str>) -> Recorded {
        Recorded {
            method: "GET".into(),
            path: "/items".into(),
            query: query.map(str::to_owned),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn page(handler: &impl Fn(&Recorded) -> Reply, query: Option<&str>) -> (u16, Value) {
        let reply = handler(&get(query));
        let crate::reply::Payload::Bytes(body) = &reply.payload else {
            panic!("fixed body");
        };
        (reply.code(), serde_json::from_slice(body).unwrap())
    }

    #[test]
    fn sequence_repeats_the_last_reply() {
        let handler = sequence(vec![Reply::status(503), Reply::status(200)]);
        let codes: Vec<u16> = (0..4).map(|_| handler(&get(None)).code()).collect();
        assert_eq!(codes, [503, 200, 200, 200]);
    }

    #[test]
    fn pagination_walks_every_item_once() {
        let items: Vec<Value> = (0..7).map(|i| json!({ "id": i })).collect();
        let handler = paginated(items.clone(), 3);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = cursor.as_ref().map(|c| format!("cursor={c}"));
            let (code, body) = page(&handler, query.as_deref());
            assert_eq!(code, 200);
            pages += 1;
            seen.extend(body["data"].as_array().unwrap().iter().cloned());
            match &body["meta"]["next_cursor"] {
                Value::Null => break,
                Value::String(next) => cursor = Some(next.clone()),
                other => panic!("bad cursor {other}"),
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, items);
    }

    #[test]
    fn pagination_edges() {
        let empty = paginated(Vec::new(), 2);
        assert_eq!(
            page(&empty, None),
            (200, json!({ "data": [], "meta": { "next_cursor": null } }))
        );
        let handler = paginated(vec![json!(1), json!(2)], 2);
        assert_eq!(
            page(&handler, Some("cursor=")).1["meta"]["next_cursor"],
            Value::Null
        );
        assert_eq!(page(&handler, Some("cursor=2")).0, 400);
        assert_eq!(page(&handler, Some("cursor=bogus")).0, 400);
    }
}
