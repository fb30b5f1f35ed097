//! JSON paths that name where a finding is, and the line each element starts on.
//!
//! serde_json forgets positions, but a finding a person cannot locate is half a finding (and
//! GitHub code scanning wants a line). The documents linted are small and already validated, so
//! a tiny scanner that records where every value starts is enough.

use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// A path such as `Statement[0].Condition.StringEquals."accounts.google.com:oaud"`: keys that
/// are not plain identifiers are quoted, so the path reads back unambiguously.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath(Vec<Segment>);

impl JsonPath {
    /// The document itself.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path followed by an object key.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        Self(segments)
    }

    /// This path followed by an array index.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The line of this element, or of its nearest ancestor the scanner saw (elements of a
    /// document embedded as a string have no line of their own).
    pub(super) fn line_in(&self, lines: &HashMap<String, usize>) -> usize {
        let mut path = self.clone();
        loop {
            if let Some(line) = lines.get(&path.to_string()) {
                return *line;
            }
            if path.0.pop().is_none() {
                return 1;
            }
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let plain = k
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if plain {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{}", serde_json::Value::String(k.clone()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The 1-based line where each value of the JSON `text` starts, keyed by its rendered path.
/// Lenient by design: on text it does not understand it stops, and callers fall back to line 1.
pub(super) fn value_lines(text: &str) -> HashMap<String, usize> {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        text,
        at: 0,
        line: 1,
        lines: HashMap::new(),
    };
    scanner.value(&mut JsonPath::root(), 0);
    scanner.lines
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
    line: usize,
    lines: HashMap<String, usize>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                self.line += 1;
            } else if !b.is_ascii_whitespace() {
                return;
            }
            self.at += 1;
        }
    }

    fn value(&mut self, path: &mut JsonPath, depth: usize) {
        self.skip_space();
        self.lines.entry(path.to_string()).or_insert(self.line);
        if depth > 64 {
            self.at = self.bytes.len();
            return;
        }
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                loop {
                    self.skip_space();
                    match self.peek() {
                        Some(b'"') => {}
                        Some(b'}') => {
                            self.at += 1;
                            return;
                        }
                        Some(b',') => {
                            self.at += 1;
                            continue;
                        }
                        _ => {
                            self.at = self.bytes.len();
                            return;
                        }
                    }
                    let key = self.string();
                    self.skip_space();
                    if self.peek() != Some(b':') {
                        self.at = self.bytes.len();
                        return;
                    }
                    self.at += 1;
                    path.0.push(Segment::Key(key));
                    self.value(path, depth + 1);
                    path.0.pop();
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut index = 0;
                loop {
                    self.skip_space();
                    match self.peek() {
                        Some(b']') => {
                            self.at += 1;
                            return;
                        }
                        Some(b',') => {
                            self.at += 1;
                            continue;
                        }
                        None => return,
                        _ => {}
                    }
                    let before = self.at;
                    path.0.push(Segment::Index(index));
                    self.value(path, depth + 1);
                    path.0.pop();
                    if self.at == before {
                        // Not a value (e.g. a stray `}`): give up rather than spin.
                        self.at = self.bytes.len();
                        return;
                    }
                    index += 1;
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}') || b.is_ascii_whitespace() {
                        break;
                    }
                    self.at += 1;
                }
            }
            None => {}
        }
    }

    /// Reads a string literal starting at `"`, decoding it with serde_json for exactness.
    fn string(&mut self) -> String {
        let start = self.at;
        self.at += 1;
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'\\' => self.at += 1,
                b'"' => break,
                _ => {}
            }
        }
        let end = self.at.min(self.bytes.len());
        self.text
            .get(start..end)
            .and_then(|s| serde_json::from_str::<String>(s).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_the_brief_says() {
        let p = JsonPath::root()
            .key("Statement")
            .index(0)
            .key("Condition")
            .key("StringEquals")
            .key("accounts.google.com:oaud");
        assert_eq!(
            p.to_string(),
            r#"Statement[0].Condition.StringEquals."accounts.google.com:oaud""#
        );
        assert_eq!(
            JsonPath::root().index(2).key("name").to_string(),
            "[2].name"
        );
    }

    #[test]
    fn lines_of_nested_values_and_fallback_to_ancestors() {
        let text = "{\n  \"a\": [\n    1,\n    {\"b c\": \"x\\\"y\"}\n  ],\n  \"d\": true\n}";
        let lines = value_lines(text);
        let root = JsonPath::root();
        assert_eq!(root.key("a").line_in(&lines), 2);
        assert_eq!(root.key("a").index(0).line_in(&lines), 3);
        assert_eq!(root.key("a").index(1).key("b c").line_in(&lines), 4);
        assert_eq!(root.key("d").line_in(&lines), 6);
        assert_eq!(root.key("a").index(1).key("zz").index(3).line_in(&lines), 4);
        assert_eq!(root.key("nope").line_in(&lines), 1);
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in [
            "",
            "{",
            "[1,",
            "[}",
            "[1}",
            "{\"a\"",
            "{\"a\":",
            "\"unterminated",
            "{\"a\\",
        ] {
            let _ = value_lines(text);
        }
    }
}
