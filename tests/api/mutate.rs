//! Mutated callback bodies, derived from the platform's sample bodies: the one set of mutations
//! that the parser properties (`fuzz`) and the HTTP-level fuzzing (`fuzz_http`) share.
//!
//! A body is a seed and a list of mutations. JSON-level ones change the parsed seed (swap a
//! value's type, replace it, nest it deeply, make it huge, put a NUL or a lone surrogate in a
//! string, give a key twice, repeat the CDRs of a fee list); byte-level ones then change the
//! text (truncate it, flip a bit, insert bytes that are not UTF-8 or a raw NUL, prefix a BOM).

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::helpers::{CALLOUT_SAMPLE, FEE_SAMPLE, fee_body, status_body};

/// Marks, inside strings and keys, what is written out after serialising: serde_json would
/// escape or refuse them as values.
const LONE_SURROGATE: &str = "\u{E000}";
const DUPLICATE: &str = "\u{E001}";

/// The seeds: the platform's published samples verbatim, and one body of every other kind.
pub fn seeds() -> Vec<String> {
    let extra =
        json!({"userData": "order-7", "partyType": 1, "stateCode": "8101", "stateDesc": "busy"});
    vec![
        CALLOUT_SAMPLE.to_owned(),
        FEE_SAMPLE.to_owned(),
        status_body("alerting", "seed-1", json!({})),
        status_body(
            "answer",
            "seed-1",
            json!({"displayCallerNum": "+867550000001"}),
        ),
        status_body("collectInfo", "seed-1", json!({"digitInfo": "1"})),
        status_body("disconnect", "seed-1", extra),
        fee_body("seed-fee", 3),
    ]
}

#[derive(Debug, Clone)]
pub enum Mutation {
    /// The value at node `at` becomes one of another JSON type.
    SwapType {
        at: usize,
        to: u8,
    },
    /// The value at node `at` becomes an arbitrary JSON value.
    Replace {
        at: usize,
        with: Value,
    },
    /// The value at node `at` is wrapped in `depth` arrays or objects.
    Nest {
        at: usize,
        depth: usize,
        objects: bool,
    },
    /// The value at node `at` becomes a string of `len` characters.
    Huge {
        at: usize,
        len: usize,
    },
    /// A NUL character inside the string at node `at` (or a new one).
    Nul {
        at: usize,
    },
    /// A lone surrogate escape (`\ud800`) inside the string at node `at`.
    LoneSurrogate {
        at: usize,
    },
    /// Object node `at` gets one of its keys a second time, with another value.
    DuplicateKey {
        at: usize,
        with: Value,
    },
    /// The first array of the body (a fee list's CDRs) is repeated until it has `len` items.
    Repeat {
        len: usize,
    },
    /// Bytes.
    Truncate {
        at: usize,
    },
    FlipBit {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Bom,
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9 +-]{0,25}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        Just(json!("")),
        Just(json!("2026-11-24 06:00:00")),
        Just(json!(" 2147483648 ")),
    ]
}

pub fn any_json() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `huge`: the longest string `Huge` makes.
fn mutation(huge: usize) -> impl Strategy<Value = Mutation> {
    let at = || any::<usize>();
    prop_oneof![
        4 => (at(), any::<u8>()).prop_map(|(at, to)| Mutation::SwapType { at, to }),
        3 => (at(), any_json()).prop_map(|(at, with)| Mutation::Replace { at, with }),
        1 => (at(), 1..300usize, any::<bool>()).prop_map(|(at, depth, objects)| Mutation::Nest { at, depth, objects }),
        1 => (at(), 1000..huge).prop_map(|(at, len)| Mutation::Huge { at, len }),
        2 => at().prop_map(|at| Mutation::Nul { at }),
        2 => at().prop_map(|at| Mutation::LoneSurrogate { at }),
        2 => (at(), json_leaf()).prop_map(|(at, with)| Mutation::DuplicateKey { at, with }),
        1 => (0..60usize).prop_map(|len| Mutation::Repeat { len }),
        2 => at().prop_map(|at| Mutation::Truncate { at }),
        2 => (at(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (at(), prop_oneof![
            Just(vec![0xff]), Just(vec![0xc3]), Just(vec![0xc0, 0xaf]), Just(vec![0xed, 0xa0, 0x80]),
            Just(vec![0]), prop::collection::vec(any::<u8>(), 1..8),
        ]).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => Just(Mutation::Bom),
    ]
}

/// A seed and what is done to it.
#[derive(Debug, Clone)]
pub struct Mutated {
    pub seed: usize,
    pub mutations: Vec<Mutation>,
}

/// A seed and up to three mutations, whose strings grow to `huge` characters.
pub fn mutated(huge: usize) -> impl Strategy<Value = Mutated> {
    (
        0..seeds().len(),
        prop::collection::vec(mutation(huge), 0..4),
    )
        .prop_map(|(seed, mutations)| Mutated { seed, mutations })
}

impl Mutated {
    pub fn body(&self, seeds: &[String]) -> Vec<u8> {
        let mut value: Value = serde_json::from_str(&seeds[self.seed]).expect("a seed is JSON");
        for mutation in &self.mutations {
            mutate_json(&mut value, mutation);
        }
        let text = serde_json::to_string(&value)
            .unwrap()
            .replace(LONE_SURROGATE, "\\ud800")
            .replace(&format!("\"{DUPLICATE}"), "\"");
        let mut bytes = text.into_bytes();
        for mutation in &self.mutations {
            mutate_bytes(&mut bytes, mutation);
        }
        bytes
    }
}

/// JSON Pointers of every node, the root first.
fn pointers(value: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{here}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                pointers(item, format!("{here}/{key}"), out);
            }
        }
        _ => {}
    }
}

fn node(value: &mut Value, at: usize) -> &mut Value {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let pointer = all[at % all.len()].clone();
    value
        .pointer_mut(&pointer)
        .expect("a pointer of this value")
}

fn mutate_json(value: &mut Value, mutation: &Mutation) {
    match mutation {
        Mutation::SwapType { at, to } => {
            let target = node(value, *at);
            let text = match &*target {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            *target = match to % 6 {
                0 => Value::Null,
                1 => Value::Bool(text.is_empty()),
                2 => text.trim().parse::<i64>().map_or(json!(12345), Value::from),
                3 => Value::String(text),
                4 => json!([target.clone()]),
                _ => json!({ "v": target.clone() }),
            };
        }
        Mutation::Replace { at, with } => *node(value, *at) = with.clone(),
        Mutation::Nest { at, depth, objects } => {
            let target = node(value, *at);
            let mut nested = target.take();
            for _ in 0..*depth {
                nested = if *objects {
                    json!({ "n": nested })
                } else {
                    json!([nested])
                };
            }
            *target = nested;
        }
        Mutation::Huge { at, len } => *node(value, *at) = Value::String("9".repeat(*len)),
        Mutation::Nul { at } => in_string(node(value, *at), "\0"),
        Mutation::LoneSurrogate { at } => in_string(node(value, *at), LONE_SURROGATE),
        Mutation::DuplicateKey { at, with } => {
            if let Value::Object(map) = node(value, *at)
                && let Some(key) = map.keys().next().cloned()
            {
                map.insert(format!("{DUPLICATE}{key}"), with.clone());
            }
        }
        Mutation::Repeat { len } => {
            if let Some(Value::Array(items)) = first_array(value)
                && !items.is_empty()
            {
                let copy = items.clone();
                *items = copy.iter().cycle().take(*len).cloned().collect();
            }
        }
        _ => {}
    }
}

fn first_array(value: &mut Value) -> Option<&mut Value> {
    match value {
        Value::Array(_) => Some(value),
        Value::Object(map) => map.values_mut().find_map(first_array),
        _ => None,
    }
}

fn in_string(target: &mut Value, what: &str) {
    match target {
        Value::String(text) => {
            let middle = text.char_indices().nth(text.chars().count() / 2);
            let at = middle.map_or(text.len(), |(i, _)| i);
            text.insert_str(at, what);
        }
        other => *other = Value::String(format!("a{what}b")),
    }
}

fn mutate_bytes(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::Truncate { at } => bytes.truncate(at % (len + 1)),
        Mutation::FlipBit { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::Insert {
            at,
            bytes: inserted,
        } => {
            let at = at % (len + 1);
            bytes.splice(at..at, inserted.iter().copied());
        }
        Mutation::Bom => bytes.splice(0..0, [0xef, 0xbb, 0xbf]).for_each(drop),
        _ => {}
    }
}
