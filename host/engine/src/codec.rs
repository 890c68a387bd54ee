//! How events are written to the store: JSON, with big payloads moved out to
//! content-addressed blobs.
//!
//! A payload is stored as `{"v": <value>, "refs": {"<json pointer>": "<sha256>"}}`.
//! Any subtree of the value whose JSON is larger than the threshold is
//! replaced by `null` in `v` and named in `refs`; its bytes are stored once
//! as a blob under their SHA-256. Because the references are listed beside
//! the value rather than marked inside it, no value a component returns can
//! be mistaken for a reference. The same 20 MB alert passed to five steps is
//! one blob, referred to five times.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::store::{RunStore, StoreError};

/// Payloads whose JSON is larger than this are stored as blobs (64 KiB).
pub const DEFAULT_BLOB_THRESHOLD: usize = 64 * 1024;

/// A payload as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payload {
    /// The value, with blob-backed subtrees replaced by `null`.
    pub v: Arc<Value>,
    /// JSON pointer → SHA-256 of the subtree stored as a blob.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refs: BTreeMap<String, String>,
}

/// Serialises an event for the store, moving big payloads to blobs.
pub fn encode(
    event: &Event,
    threshold: usize,
    store: &dyn RunStore,
) -> Result<Vec<u8>, StoreError> {
    let stored = event.clone().try_map(|v| pack(v, threshold, store))?;
    serde_json::to_vec(&stored).map_err(|e| StoreError::Io(format!("encoding an event: {e}")))
}

/// Reads a stored event back, fetching its blobs. `cache` shares blobs
/// between the events of one history.
pub fn decode(
    run: &str,
    seq: u64,
    bytes: &[u8],
    store: &dyn RunStore,
    cache: &mut HashMap<String, Arc<Value>>,
) -> Result<Event, StoreError> {
    let stored: Event<Payload> =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            run: run.to_string(),
            seq,
            message: e.to_string(),
        })?;
    stored.try_map(|p| unpack(p, store, cache))
}

fn pack(v: Arc<Value>, threshold: usize, store: &dyn RunStore) -> Result<Payload, StoreError> {
    if json_len(&v)? <= threshold {
        return Ok(Payload {
            v,
            refs: BTreeMap::new(),
        });
    }
    let mut refs = BTreeMap::new();
    let packed = pack_value(&v, String::new(), threshold, store, &mut refs)?;
    Ok(Payload {
        v: Arc::new(packed),
        refs,
    })
}

/// `v`'s JSON is known to exceed the threshold. A container with a child
/// over the threshold keeps its shape and packs that child; otherwise the
/// whole value is one blob. So the same big subtree is the same blob
/// wherever it is embedded. Sizes are counted, not serialised: only the
/// bytes of a blob are ever built, so packing a 20 MB payload needs one
/// 20 MB buffer, not one per nesting level.
fn pack_value(
    v: &Value,
    pointer: String,
    threshold: usize,
    store: &dyn RunStore,
    refs: &mut BTreeMap<String, String>,
) -> Result<Value, StoreError> {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(map) => map.iter().map(|(k, c)| (escape(k), c)).collect(),
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c))
            .collect(),
        _ => Vec::new(),
    };
    let mut big = Vec::with_capacity(children.len());
    for (_, c) in &children {
        big.push(json_len(c)? > threshold);
    }
    if !big.contains(&true) {
        // Sized up front: growing by doubling would hold up to 1.5 copies at once.
        let mut bytes = Vec::with_capacity(json_len(v)?);
        serde_json::to_writer(&mut bytes, v)
            .map_err(|e| StoreError::Io(format!("encoding a payload: {e}")))?;
        let hash = hex::encode(Sha256::digest(&bytes));
        store.put_blob(&hash, &bytes)?;
        refs.insert(pointer, hash);
        return Ok(Value::Null);
    }
    let mut packed = Vec::with_capacity(children.len());
    for ((key, c), big) in children.into_iter().zip(big) {
        packed.push(if big {
            pack_value(c, format!("{pointer}/{key}"), threshold, store, refs)?
        } else {
            c.clone()
        });
    }
    Ok(match v {
        Value::Object(map) => Value::Object(map.keys().cloned().zip(packed).collect()),
        _ => Value::Array(packed),
    })
}

/// The length of `v`'s JSON, counted without building it.
fn json_len(v: &Value) -> Result<usize, StoreError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    serde_json::to_writer(&mut c, v)
        .map_err(|e| StoreError::Io(format!("encoding a payload: {e}")))?;
    Ok(c.0)
}

fn unpack(
    p: Payload,
    store: &dyn RunStore,
    cache: &mut HashMap<String, Arc<Value>>,
) -> Result<Arc<Value>, StoreError> {
    if p.refs.is_empty() {
        return Ok(p.v);
    }
    let mut v = Arc::unwrap_or_clone(p.v);
    for (pointer, hash) in &p.refs {
        let blob = match cache.get(hash) {
            Some(b) => b.clone(),
            None => {
                let bytes = store
                    .get_blob(hash)?
                    .ok_or_else(|| StoreError::MissingBlob(hash.clone()))?;
                if hex::encode(Sha256::digest(&bytes)) != *hash {
                    return Err(StoreError::Io(format!(
                        "blob {hash} does not match its hash"
                    )));
                }
                let parsed: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Io(format!("blob {hash}: {e}")))?;
                let parsed = Arc::new(parsed);
                cache.insert(hash.clone(), parsed.clone());
                parsed
            }
        };
        if pointer.is_empty() {
            v = (*blob).clone();
        } else if let Some(slot) = v.pointer_mut(pointer) {
            *slot = (*blob).clone();
        } else {
            return Err(StoreError::Io(format!(
                "a payload refers to {pointer}, which its value does not have"
            )));
        }
    }
    Ok(Arc::new(v))
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
