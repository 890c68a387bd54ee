//! The value of one `history` append: the records it wrote, in order.
//!
//! A single record is stored as itself (an event is a JSON object, so its
//! first byte is `{`, as in version-2 stores). Several are [`GROUP`]
//! followed by each record as a u32 big-endian length and its bytes. A
//! value may be extended by later appends of the same run (see
//! `SledStore::append`).

/// First byte of a value holding several records (never the start of JSON).
const GROUP: u8 = 0x01;

/// One value for `records` (not empty).
pub(crate) fn encode(records: &[Vec<u8>]) -> Vec<u8> {
    // A lone record that starts like a group (not an event, but the store
    // takes any bytes) is framed, so it cannot be misread.
    if let [one] = records
        && one.first() != Some(&GROUP)
    {
        return one.clone();
    }
    let mut out = Vec::with_capacity(1 + framed_len(records));
    out.push(GROUP);
    push_framed(&mut out, records);
    out
}

/// The bytes `records` take in a group.
pub(crate) fn framed_len(records: &[Vec<u8>]) -> usize {
    records.iter().map(|r| 4 + r.len()).sum()
}

fn push_framed(out: &mut Vec<u8>, records: &[Vec<u8>]) {
    for r in records {
        push_record(out, r);
    }
}

/// A record as its length and its bytes.
fn push_record(out: &mut Vec<u8>, record: &[u8]) {
    // Records are events far below 4 GiB (big payloads are blobs).
    out.extend_from_slice(&(record.len() as u32).to_be_bytes());
    out.extend_from_slice(record);
}

/// `value` (one stored append) with `records` added after its own.
pub(crate) fn extend(value: &[u8], records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + value.len() + framed_len(records));
    if value.first() == Some(&GROUP) {
        out.extend_from_slice(value);
    } else {
        // A lone record becomes the group's first.
        out.push(GROUP);
        push_record(&mut out, value);
    }
    push_framed(&mut out, records);
    out
}

/// How many records `value` holds, if it is whole.
pub(crate) fn count(value: &[u8]) -> Option<usize> {
    let Some((&GROUP, mut rest)) = value.split_first() else {
        return Some(1);
    };
    let mut n = 0;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        rest = tail.get(u32::from_be_bytes(*len) as usize..)?;
        n += 1;
    }
    (n > 0).then_some(n)
}

/// Appends the records of `value` to `out`; says what is wrong with a
/// damaged value.
pub(crate) fn decode(value: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), String> {
    let Some((&GROUP, mut rest)) = value.split_first() else {
        out.push(value.to_vec());
        return Ok(());
    };
    let before = out.len();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(format!(
                "a grouped value ends inside the length of its record {}",
                out.len() - before
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((record, tail)) = (len <= tail.len()).then(|| tail.split_at(len)) else {
            return Err(format!(
                "record {} of a grouped value says {len} bytes, {} remain",
                out.len() - before,
                tail.len()
            ));
        };
        out.push(record.to_vec());
        rest = tail;
    }
    if out.len() == before {
        return Err("a grouped value holds no record".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        decode(&encode(records), &mut out).expect("decodes");
        out
    }

    #[test]
    fn one_record_is_stored_as_itself() {
        let r = br#"{"type":"started"}"#.to_vec();
        assert_eq!(encode(std::slice::from_ref(&r)), r);
        assert_eq!(round_trip(std::slice::from_ref(&r)), [r]);
    }

    #[test]
    fn a_lone_record_that_looks_like_a_group_is_framed() {
        let r = vec![GROUP, 0, 0, 0, 9];
        assert_ne!(encode(std::slice::from_ref(&r)), r);
        assert_eq!(round_trip(std::slice::from_ref(&r)), [r]);
    }

    #[test]
    fn several_records_come_back_in_order() {
        let rs = vec![
            b"{}".to_vec(),
            Vec::new(),
            "{\"é\":\"☃\"}".as_bytes().to_vec(),
        ];
        assert_eq!(round_trip(&rs), rs);
    }

    #[test]
    fn extending_keeps_every_record_in_order() {
        let one = b"{\"a\":1}".to_vec();
        let v = encode(std::slice::from_ref(&one));
        assert_eq!(count(&v), Some(1));
        let more = vec![b"{\"b\":2}".to_vec(), b"{}".to_vec()];
        let v = extend(&v, &more);
        assert_eq!(count(&v), Some(3));
        let v = extend(&v, &[b"{\"c\":3}".to_vec()]);
        let mut out = Vec::new();
        decode(&v, &mut out).unwrap();
        assert_eq!(
            out,
            [one, more[0].clone(), more[1].clone(), b"{\"c\":3}".to_vec()]
        );
        assert_eq!(count(&v[..v.len() - 1]), None);
    }

    #[test]
    fn damaged_groups_are_errors_not_panics() {
        let good = encode(&[b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]);
        let mut out = Vec::new();
        for cut in 1..good.len() {
            let r = decode(&good[..cut], &mut out);
            // A cut at a record boundary is a shorter valid group.
            if cut != 1 + 4 + 7 {
                assert!(r.is_err(), "cut at {cut} accepted");
            }
        }
        assert!(decode(&[GROUP], &mut out).is_err());
        assert!(decode(&[GROUP, 0xff, 0xff, 0xff, 0xff, b'{'], &mut out).is_err());
    }
}
