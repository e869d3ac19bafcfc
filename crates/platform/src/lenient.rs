//! Lenient field readers. The platform's examples are "indicative only" (spec §1.1): a number
//! may arrive as a string and an absent value as "". These readers accept every such spelling
//! and still refuse what cannot be meant (an object where a number belongs).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A string field: strings, numbers (kept as written) and null; "" means absent.
pub fn opt_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct StringVisitor;
    impl<'de> Visitor<'de> for StringVisitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, a number or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then(|| v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok((!v.is_empty()).then_some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(StringVisitor)
}

/// An integer field: numbers, numeric strings and null; "" means absent.
pub fn opt_i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    struct IntVisitor;
    impl<'de> Visitor<'de> for IntVisitor {
        type Value = Option<i32>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "an integer (or a string of digits) between -2147483648 and 2147483647, or null",
            )
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
                #[allow(clippy::cast_possible_truncation)]
                return Ok(Some(v as i32));
            }
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let trimmed = v.trim();
            if trimmed.is_empty() {
                return Ok(None);
            }
            trimmed
                .parse::<i32>()
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(IntVisitor)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "super::opt_i32")]
        n: Option<i32>,
        #[serde(default, deserialize_with = "super::opt_string")]
        s: Option<String>,
    }

    fn probe(json: &str) -> Result<(Option<i32>, Option<String>), String> {
        serde_json::from_str::<Probe>(json)
            .map(|p| (p.n, p.s))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_come_as_numbers_strings_or_nothing() {
        assert_eq!(probe(r#"{"n": 8001}"#).unwrap().0, Some(8001));
        assert_eq!(probe(r#"{"n": "8001"}"#).unwrap().0, Some(8001));
        assert_eq!(probe(r#"{"n": ""}"#).unwrap().0, None);
        assert_eq!(probe(r#"{"n": null}"#).unwrap().0, None);
        assert_eq!(probe("{}").unwrap().0, None);
    }

    #[test]
    fn integers_refuse_words_objects_and_overflow() {
        assert!(probe(r#"{"n": "busy"}"#).is_err());
        assert!(probe(r#"{"n": {}}"#).is_err());
        assert!(probe(r#"{"n": 99999999999}"#).is_err());
        assert!(probe(r#"{"n": 1.5}"#).is_err());
    }

    #[test]
    fn strings_keep_numbers_and_drop_blanks() {
        assert_eq!(probe(r#"{"s": 1}"#).unwrap().1.as_deref(), Some("1"));
        assert_eq!(probe(r#"{"s": ""}"#).unwrap().1, None);
        assert!(probe(r#"{"s": ["x"]}"#).is_err());
    }
}
