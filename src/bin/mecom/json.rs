//! A minimal JSON writer (objects, arrays, strings, numbers), so the tool
//! needs no serialisation crate.  Output is compact, one value per call.

use std::fmt::Write as _;

/// Escapes `s` as a JSON string literal, quotes included.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A float with `decimals` digits after the point; `null` when not finite
/// (JSON has no NaN or infinity).
pub fn float(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "null".to_string()
    }
}

/// A JSON array of already-encoded values.
pub fn array<I: IntoIterator<Item = String>>(items: I) -> String {
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push(']');
    out
}

/// Builds one JSON object, key by key, in insertion order.
#[derive(Debug, Default)]
pub struct Object {
    body: String,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    /// Adds `key` with an already-encoded JSON value.
    pub fn raw(mut self, key: &str, value: &str) -> Object {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        self.body.push_str(&string(key));
        self.body.push(':');
        self.body.push_str(value);
        self
    }

    /// Adds a string value.
    pub fn str(self, key: &str, value: &str) -> Object {
        self.raw(key, &string(value))
    }

    /// Adds an unsigned integer value.
    pub fn uint(self, key: &str, value: u64) -> Object {
        self.raw(key, &value.to_string())
    }

    /// Adds a float value with `decimals` digits after the point.
    pub fn float(self, key: &str, value: f64, decimals: usize) -> Object {
        self.raw(key, &float(value, decimals))
    }

    /// Adds a boolean value.
    pub fn bool(self, key: &str, value: bool) -> Object {
        self.raw(key, if value { "true" } else { "false" })
    }

    /// Adds an unsigned integer, or `null` when there is none.
    pub fn opt_uint(self, key: &str, value: Option<u64>) -> Object {
        match value {
            Some(v) => self.uint(key, v),
            None => self.raw(key, "null"),
        }
    }

    /// The encoded object.
    pub fn finish(self) -> String {
        format!("{{{}}}", self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Escapes, number formats and nesting.
    #[test]
    fn objects_strings_and_numbers_encode() {
        let o = Object::new()
            .str("name", "a\"b\\c\n\u{1}")
            .uint("n", 42)
            .float("r", 0.12345, 3)
            .float("bad", f64::NAN, 3)
            .bool("ok", true)
            .opt_uint("none", None)
            .raw("list", &array(["1".to_string(), "2".to_string()]))
            .finish();
        assert_eq!(
            o,
            r#"{"name":"a\"b\\c\n\u0001","n":42,"r":0.123,"bad":null,"ok":true,"none":null,"list":[1,2]}"#
        );
        assert_eq!(Object::new().finish(), "{}");
        assert_eq!(array(Vec::new()), "[]");
    }
}
