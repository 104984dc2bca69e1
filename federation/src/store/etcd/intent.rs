//! Decisions larger than one etcd transaction may be (`--max-txn-ops`, `--max-request-bytes`),
//! written through an intent: the decision's writes are staged as parts under
//! `intents/ID/part/N`, then one transaction writes `intents/ID/commit` (the decision's commit
//! point), then the writes are applied to the tables in as many transactions as they need, and the
//! intent is removed. Every read overlays a committed intent on the tables, so a reader sees the
//! whole decision or none of it; a staged intent without its commit key is ignored and removed.

use crate::store::{Table, Write};
use std::collections::BTreeMap;

/// The key space of intents, under the store's prefix.
pub(super) const INTENTS: &str = "intents/";

/// The key of part `n` of intent `id`.
pub(super) fn part_key(id: &str, n: usize) -> String {
    format!("{INTENTS}{id}/part/{n:06}")
}

/// The key whose presence commits intent `id`; it holds the number of parts.
pub(super) fn commit_key(id: &str) -> String {
    format!("{INTENTS}{id}/commit")
}

/// The key prefix of everything of intent `id`.
pub(super) fn intent_prefix(id: &str) -> String {
    format!("{INTENTS}{id}/")
}

fn table_index(table: Table) -> u8 {
    Table::ALL
        .iter()
        .position(|t| *t == table)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(u8::MAX)
}

/// The encoded size of one write in a part.
pub(super) fn encoded_len(write: &Write) -> usize {
    1 + 4 + write.key.len() + 1 + 4 + write.value.as_ref().map_or(0, Vec::len)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// Encodes writes as one part: per write, the table's index, the key's length and bytes, whether a
/// value follows, and the value's length and bytes (lengths as little-endian u32).
pub(super) fn encode(writes: &[Write]) -> Vec<u8> {
    let mut out = Vec::with_capacity(writes.iter().map(encoded_len).sum());
    for write in writes {
        out.push(table_index(write.table));
        put_len(&mut out, write.key.len());
        out.extend_from_slice(write.key.as_bytes());
        match &write.value {
            Some(value) => {
                out.push(1);
                put_len(&mut out, value.len());
                out.extend_from_slice(value);
            }
            None => {
                out.push(0);
                put_len(&mut out, 0);
            }
        }
    }
    out
}

/// Decodes a part written by [`encode`].
pub(super) fn decode(mut bytes: &[u8]) -> Result<Vec<Write>, String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("the part ends early".to_owned());
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    fn len(bytes: &mut &[u8]) -> Result<usize, String> {
        let raw: [u8; 4] = take(bytes, 4)?.try_into().map_err(|_| "bad length")?;
        usize::try_from(u32::from_le_bytes(raw)).map_err(|e| e.to_string())
    }
    let mut writes = Vec::new();
    while !bytes.is_empty() {
        let index = take(&mut bytes, 1)?[0];
        let table = *Table::ALL
            .get(usize::from(index))
            .ok_or_else(|| format!("table {index} does not exist"))?;
        let key_len = len(&mut bytes)?;
        let key = String::from_utf8(take(&mut bytes, key_len)?.to_vec())
            .map_err(|_| "a key is not UTF-8".to_owned())?;
        let present = take(&mut bytes, 1)?[0] == 1;
        let value_len = len(&mut bytes)?;
        let value = take(&mut bytes, value_len)?.to_vec();
        writes.push(Write {
            table,
            key,
            value: present.then_some(value),
        });
    }
    Ok(writes)
}

/// The committed intents found among `entries` (keys relative to the prefix), oldest first, each
/// with its writes; and the ids of intents staged but never committed.
pub(super) fn found(
    entries: &BTreeMap<String, Vec<u8>>,
) -> (Vec<(String, Vec<Write>)>, Vec<String>) {
    let mut parts: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    let mut commits: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, value) in entries.range(INTENTS.to_owned()..) {
        let Some(rest) = key.strip_prefix(INTENTS) else {
            break;
        };
        let Some((id, what)) = rest.split_once('/') else {
            continue;
        };
        if what == "commit" {
            let count = String::from_utf8_lossy(value).parse().unwrap_or(usize::MAX);
            commits.insert(id, count);
        } else {
            parts.entry(id).or_default().push(value);
        }
    }
    let mut committed = Vec::new();
    let mut staged = Vec::new();
    let ids: std::collections::BTreeSet<&str> =
        parts.keys().chain(commits.keys()).copied().collect();
    for id in ids {
        let id_parts = parts.get(id).map(Vec::as_slice).unwrap_or_default();
        match commits.get(id) {
            Some(count) if *count == id_parts.len() => {
                let mut writes = Vec::new();
                let mut readable = true;
                for part in id_parts {
                    match decode(part) {
                        Ok(mut more) => writes.append(&mut more),
                        Err(error) => {
                            tracing::error!(intent = id, %error, "an intent of the store is unreadable");
                            readable = false;
                        }
                    }
                }
                if readable {
                    committed.push((id.to_owned(), writes));
                }
            }
            // Parts still being staged, or a commit key whose parts are not all visible: only a
            // crash leaves the first; the writer never commits before its parts are written.
            _ => staged.push(id.to_owned()),
        }
    }
    (committed, staged)
}

/// `table`'s entries: the stored ones with every committed intent's writes laid over them.
pub(super) fn view(entries: &BTreeMap<String, Vec<u8>>, table: Table) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("{}/", table.name());
    let mut out: BTreeMap<String, Vec<u8>> = entries
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k[prefix.len()..].to_owned(), v.clone()))
        .collect();
    let (committed, _) = found(entries);
    for (_, writes) in committed {
        for write in writes.into_iter().filter(|w| w.table == table) {
            match write.value {
                Some(value) => out.insert(write.key, value),
                None => out.remove(&write.key),
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let writes = vec![
            Write::put(Table::Units, "a", b"1".to_vec()),
            Write::delete(Table::Slices, "ns/x@u"),
            Write::put(Table::Audit, "", Vec::new()),
        ];
        assert_eq!(decode(&encode(&writes)).expect("decodes"), writes);
        assert!(decode(&encode(&writes)[..5]).is_err());
    }

    #[test]
    fn a_committed_intent_is_read_over_the_tables_and_a_staged_one_is_not() {
        let mut entries = BTreeMap::new();
        entries.insert("units/a".to_owned(), b"old".to_vec());
        entries.insert("units/b".to_owned(), b"gone".to_vec());
        let decided = [
            Write::put(Table::Units, "a", b"new".to_vec()),
            Write::delete(Table::Units, "b"),
        ];
        entries.insert(part_key("1", 0), encode(&decided[..1]));
        entries.insert(part_key("1", 1), encode(&decided[1..]));
        // Staged only: the tables are what they were.
        let units = view(&entries, Table::Units);
        assert_eq!(units.get("a").map(Vec::as_slice), Some(&b"old"[..]));
        assert_eq!(found(&entries).1, ["1"]);
        // Committed: the whole decision, even before it reaches the tables.
        entries.insert(commit_key("1"), b"2".to_vec());
        let units = view(&entries, Table::Units);
        assert_eq!(units.get("a").map(Vec::as_slice), Some(&b"new"[..]));
        assert!(!units.contains_key("b"));
        // Half applied to the tables: still the whole decision.
        entries.insert("units/a".to_owned(), b"new".to_vec());
        assert_eq!(view(&entries, Table::Units), units);
    }
}
