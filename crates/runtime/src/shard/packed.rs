//! The packed form of an idle instance's data: one small byte buffer instead of a map.
//!
//! A `serde_json::Map` is a B-tree whose first node holds room for 11 entries (about 640 bytes
//! however few keys it has), plus one allocation per key and per string value. An instance that
//! waits between events needs none of that: its data is packed once its batch is settled and
//! unpacked when it is touched again. Keys are interned per shard (`Keys`), so `orderId` is a
//! one-byte number in every instance instead of an allocated string; strings and numbers are
//! written inline. The 5-field order of the `bench memory` row packs into 49 bytes.
//!
//! Layout (varints are LEB128): an object is its entry count, then per entry a key reference
//! (`id << 1` for an interned key, `len << 1 | 1` followed by the UTF-8 bytes otherwise) and a
//! value. A value is a tag byte, then: nothing (null, false, true), a varint (integer `>= 0`, or
//! `!n` for a negative one), 8 little-endian bytes (float), a length and bytes (string), a count
//! and values (array), or an object as above. Unpacking gives back exactly the map that was
//! packed: same keys, same values, same number kinds (`1` stays an integer, `1.0` a float).

use rustc_hash::FxHashMap;
use serde_json::{Map, Number, Value};
use std::sync::Arc;
use xcomponent_core::instance::Context;

/// Distinct keys a shard interns; later new keys are written inline in each instance.
pub(crate) const MAX_INTERNED_KEYS: usize = 16_384;
/// Longest key interned (longer keys are rare and written inline).
pub(crate) const MAX_INTERNED_KEY_BYTES: usize = 64;
/// Deepest nesting packed (deeper data stays unpacked: `pack` answers `None`).
const MAX_DEPTH: usize = 64;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const POSITIVE: u8 = 3;
const NEGATIVE: u8 = 4;
const FLOAT: u8 = 5;
const STRING: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

/// The keys of a shard's packed data, each stored once (bounded by `MAX_INTERNED_KEYS`).
#[derive(Debug, Default)]
pub(crate) struct Keys {
    names: Vec<Arc<str>>,
    ids: FxHashMap<Arc<str>, u32>,
}

impl Keys {
    /// The number of `key`, interning it when there is room.
    fn id_of(&mut self, key: &str) -> Option<u32> {
        if let Some(id) = self.ids.get(key) {
            return Some(*id);
        }
        if self.names.len() >= MAX_INTERNED_KEYS || key.len() > MAX_INTERNED_KEY_BYTES {
            return None;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = key.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        Some(id)
    }

    fn name(&self, id: u64) -> Option<&str> {
        self.names.get(usize::try_from(id).ok()?).map(|name| &**name)
    }
}

/// Instance data packed into one buffer (see the module documentation for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed(Box<[u8]>);

impl Packed {
    /// Packs `context`, interning its keys in `keys`; `None` for data nested deeper than
    /// `MAX_DEPTH` (kept unpacked).
    pub fn pack(context: &Context, keys: &mut Keys) -> Option<Packed> {
        let mut out = Vec::with_capacity(64);
        write_object(&mut out, context, keys, 0)?;
        Some(Packed(out.into_boxed_slice()))
    }

    /// The data as it was packed.
    pub fn unpack(&self, keys: &Keys) -> Context {
        let mut reader = Reader { bytes: &self.0, at: 0 };
        let map = reader.object(keys, 0);
        debug_assert!(map.is_some() && reader.at == self.0.len(), "packed data is malformed");
        map.unwrap_or_default()
    }

    /// The value at the dot path `path` (as `path::lookup_in_map` reads it), unpacking only the
    /// top-level entry it starts from.
    pub fn lookup(&self, path: &str, keys: &Keys) -> Option<Value> {
        let (first, rest) = match path.split_once('.') {
            Some((first, rest)) => (first, Some(rest)),
            None => (path, None),
        };
        let mut reader = Reader { bytes: &self.0, at: 0 };
        let count = reader.varint()?;
        for _ in 0..count {
            let key = reader.key(keys)?;
            if key == first {
                let value = reader.value(keys, 1)?;
                return match rest {
                    None => Some(value),
                    Some(rest) => descend(value, rest),
                };
            }
            reader.skip_value(1)?;
        }
        None
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Follows the rest of a dot path inside a value, as `path::lookup_in_map` does after the first
/// segment (object keys, array indexes).
fn descend(mut current: Value, rest: &str) -> Option<Value> {
    for segment in rest.split('.') {
        current = match current {
            Value::Object(mut inner) => inner.remove(segment)?,
            Value::Array(mut items) => {
                let index = segment.parse::<usize>().ok()?;
                if index >= items.len() {
                    return None;
                }
                items.swap_remove(index)
            }
            _ => return None,
        };
    }
    Some(current)
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_object(
    out: &mut Vec<u8>,
    map: &Map<String, Value>,
    keys: &mut Keys,
    depth: usize,
) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    write_varint(out, map.len() as u64);
    for (key, value) in map {
        match keys.id_of(key) {
            Some(id) => write_varint(out, u64::from(id) << 1),
            None => {
                write_varint(out, ((key.len() as u64) << 1) | 1);
                out.extend_from_slice(key.as_bytes());
            }
        }
        write_value(out, value, keys, depth + 1)?;
    }
    Some(())
}

fn write_value(out: &mut Vec<u8>, value: &Value, keys: &mut Keys, depth: usize) -> Option<()> {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                out.push(POSITIVE);
                write_varint(out, n);
            } else if let Some(n) = number.as_i64() {
                out.push(NEGATIVE);
                write_varint(out, !(n as u64));
            } else {
                out.push(FLOAT);
                out.extend_from_slice(&number.as_f64().unwrap_or(0.0).to_le_bytes());
            }
        }
        Value::String(text) => {
            out.push(STRING);
            write_varint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        Value::Array(items) => {
            if depth > MAX_DEPTH {
                return None;
            }
            out.push(ARRAY);
            write_varint(out, items.len() as u64);
            for item in items {
                write_value(out, item, keys, depth + 1)?;
            }
        }
        Value::Object(map) => {
            out.push(OBJECT);
            write_object(out, map, keys, depth)?;
        }
    }
    Some(())
}

/// Reads packed bytes; every read is checked, so malformed bytes give `None`, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let end = self.at.checked_add(usize::try_from(len).ok()?)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn text(&mut self, len: u64) -> Option<&'a str> {
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn key<'s>(&mut self, keys: &'s Keys) -> Option<&'s str>
    where
        'a: 's,
    {
        let reference = self.varint()?;
        if reference & 1 == 0 { keys.name(reference >> 1) } else { self.text(reference >> 1) }
    }

    fn object(&mut self, keys: &Keys, depth: usize) -> Option<Map<String, Value>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let count = self.varint()?;
        let mut map = Map::new();
        for _ in 0..count {
            let key = self.key(keys)?.to_owned();
            let value = self.value(keys, depth + 1)?;
            map.insert(key, value);
        }
        Some(map)
    }

    fn value(&mut self, keys: &Keys, depth: usize) -> Option<Value> {
        Some(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            POSITIVE => Value::Number(Number::from(self.varint()?)),
            NEGATIVE => Value::Number(Number::from(!self.varint()? as i64)),
            FLOAT => {
                let bytes: [u8; 8] = self.take(8)?.try_into().ok()?;
                Value::Number(Number::from_f64(f64::from_le_bytes(bytes))?)
            }
            STRING => {
                let len = self.varint()?;
                Value::String(self.text(len)?.to_owned())
            }
            ARRAY => {
                if depth > MAX_DEPTH {
                    return None;
                }
                let count = self.varint()?;
                // The count comes from our own bytes; each item takes at least one byte.
                let mut items =
                    Vec::with_capacity(usize::try_from(count).ok()?.min(self.bytes.len()));
                for _ in 0..count {
                    items.push(self.value(keys, depth + 1)?);
                }
                Value::Array(items)
            }
            OBJECT => Value::Object(self.object(keys, depth)?),
            _ => return None,
        })
    }

    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.byte()? {
            NULL | FALSE | TRUE => {}
            POSITIVE | NEGATIVE => {
                self.varint()?;
            }
            FLOAT => {
                self.take(8)?;
            }
            STRING => {
                let len = self.varint()?;
                self.take(len)?;
            }
            ARRAY => {
                if depth > MAX_DEPTH {
                    return None;
                }
                for _ in 0..self.varint()? {
                    self.skip_value(depth + 1)?;
                }
            }
            OBJECT => {
                if depth > MAX_DEPTH {
                    return None;
                }
                for _ in 0..self.varint()? {
                    let reference = self.varint()?;
                    if reference & 1 == 1 {
                        self.take(reference >> 1)?;
                    }
                    self.skip_value(depth + 1)?;
                }
            }
            _ => return None,
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use xcomponent_core::path::lookup_in_map;

    fn object(value: Value) -> Context {
        match value {
            Value::Object(map) => map,
            _ => Context::new(),
        }
    }

    fn round_trip(context: &Context, keys: &mut Keys) -> Context {
        Packed::pack(context, keys).map(|packed| packed.unpack(keys)).unwrap_or_default()
    }

    #[test]
    fn every_kind_of_value_comes_back_as_it_was() {
        let context = object(json!({
            "null": null, "yes": true, "no": false,
            "zero": 0, "int": 1, "float": 1.0, "big": u64::MAX, "min": i64::MIN, "minus": -1,
            "half": -0.5, "text": "héllo ✓", "empty": "",
            "list": [1, "two", [3.5], {"four": null}], "nested": {"a": {"b": [true]}},
            "ключ": "unicode key",
        }));
        let mut keys = Keys::default();
        let back = round_trip(&context, &mut keys);
        assert_eq!(back, context);
        assert_eq!(serde_json::to_string(&back).ok(), serde_json::to_string(&context).ok());
    }

    #[test]
    fn the_bench_order_packs_into_49_bytes() {
        let context = object(json!({
            "orderId": "ORD-00000001", "customerId": "C-000001", "amount": 1234.5,
            "currency": "EUR", "status": "new",
        }));
        let mut keys = Keys::default();
        let packed = Packed::pack(&context, &mut keys);
        assert_eq!(packed.as_ref().map(Packed::len), Some(49));
        assert_eq!(packed.map(|packed| packed.unpack(&keys)), Some(context));
    }

    #[test]
    fn keys_past_the_bound_or_too_long_are_written_inline() {
        let mut keys = Keys::default();
        for n in 0..MAX_INTERNED_KEYS {
            keys.id_of(&format!("k{n}"));
        }
        let long = "x".repeat(MAX_INTERNED_KEY_BYTES + 1);
        let context = object(json!({"fresh": 1, long.clone(): 2, "k7": 3}));
        assert_eq!(round_trip(&context, &mut keys), context);
        assert_eq!(keys.names.len(), MAX_INTERNED_KEYS);
        assert_eq!(keys.id_of(&long), None);
    }

    #[test]
    fn lookup_reads_paths_like_the_map_does() {
        let context = object(json!({
            "customer": {"id": "C1", "tags": ["a", {"b": 2}]}, "amount": 5, "flat": "x",
        }));
        let mut keys = Keys::default();
        let Some(packed) = Packed::pack(&context, &mut keys) else {
            panic!("packs");
        };
        for path in [
            "customer",
            "customer.id",
            "customer.tags.0",
            "customer.tags.1.b",
            "customer.tags.2",
            "customer.tags.x",
            "amount",
            "amount.x",
            "flat",
            "missing",
            "customer.missing",
            "",
        ] {
            assert_eq!(
                packed.lookup(path, &keys).as_ref(),
                lookup_in_map(&context, path),
                "{path}"
            );
        }
    }

    #[test]
    fn data_nested_too_deep_is_not_packed() {
        let mut value = json!(1);
        for _ in 0..=MAX_DEPTH + 1 {
            value = json!({"a": value});
        }
        assert!(Packed::pack(&object(value), &mut Keys::default()).is_none());
    }

    #[test]
    fn malformed_bytes_are_refused_without_panicking() {
        let keys = Keys::default();
        for bytes in
            [&[5u8, 0][..], &[1, 1], &[1, 3, b'a'], &[1, 0, 6, 200], &[0xff; 12], &[1, 0, 9]]
        {
            let mut reader = Reader { bytes, at: 0 };
            let _ = reader.object(&keys, 0);
            let _ = Packed(bytes.into()).lookup("a", &keys);
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[a-zé✓ ]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]{1,3}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_data_round_trips_and_reads_the_same(
            entries in prop::collection::btree_map("[a-f]{1,3}", json_value(), 0..8),
            path in "[a-f]{1,3}(\\.[a-f0-2]{1,3}){0,2}",
        ) {
            let context: Context = entries.into_iter().collect();
            let mut keys = Keys::default();
            let packed = Packed::pack(&context, &mut keys);
            prop_assert!(packed.is_some());
            if let Some(packed) = packed {
                prop_assert_eq!(&packed.unpack(&keys), &context);
                let found = packed.lookup(&path, &keys);
                prop_assert_eq!(found.as_ref(), lookup_in_map(&context, &path));
            }
        }
    }
}
