//! Reads the test vectors and checked tables out of SPEC.md (shared by the protocol and the
//! directory crates' `vectors` tests; SPEC.md §9.1 describes the format).
//!
//! A vector is a fenced block whose info string is `vector <name>`. Inside it, `key: value`
//! starts a value, an indented line continues the last one (joined with no separator, so long
//! hex wraps freely), and `#` starts a comment line. A key may repeat.
//!
//! With `RENKEI_PRINT_VECTORS=1` the tests print the blocks they compute instead of comparing
//! them, so the hex can be pasted into SPEC.md after a deliberate format change.

#![allow(dead_code)]

use std::fmt::Write as _;

/// SPEC.md's text.
pub(crate) fn spec_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../SPEC.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether the tests should print their vectors rather than compare them.
pub(crate) fn printing() -> bool {
    std::env::var("RENKEI_PRINT_VECTORS").is_ok_and(|v| v == "1")
}

/// One vector: its values in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Vector {
    pub name: String,
    pub values: Vec<(String, String)>,
}

impl Vector {
    pub(crate) fn new(name: &str) -> Vector {
        Vector {
            name: name.to_string(),
            values: Vec::new(),
        }
    }

    /// Appends a value.
    pub(crate) fn put(&mut self, key: &str, value: impl ToString) -> &mut Self {
        self.values.push((key.to_string(), value.to_string()));
        self
    }

    /// Appends bytes as lower-case hex.
    pub(crate) fn put_hex(&mut self, key: &str, bytes: &[u8]) -> &mut Self {
        self.put(key, hex::encode(bytes))
    }

    /// The single value of `key`.
    pub(crate) fn get(&self, key: &str) -> &str {
        let all = self.all(key);
        assert_eq!(
            all.len(),
            1,
            "vector {}: key {key} appears {} times",
            self.name,
            all.len()
        );
        all[0]
    }

    /// Every value of `key`, in order.
    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of `key`, decoded from hex.
    pub(crate) fn hex(&self, key: &str) -> Vec<u8> {
        hex::decode(self.get(key))
            .unwrap_or_else(|e| panic!("vector {}: {key} is not hex: {e}", self.name))
    }

    /// The single value of `key` as a fixed-size array.
    pub(crate) fn array<const N: usize>(&self, key: &str) -> [u8; N] {
        self.hex(key)
            .try_into()
            .unwrap_or_else(|_| panic!("vector {}: {key} is not {N} bytes", self.name))
    }

    /// The single value of `key` as an integer.
    pub(crate) fn num(&self, key: &str) -> u64 {
        self.get(key)
            .parse()
            .unwrap_or_else(|e| panic!("vector {}: {key} is not a number: {e}", self.name))
    }

    /// The block as SPEC.md writes it: long hex wrapped at 64 characters.
    pub(crate) fn render(&self) -> String {
        let mut out = format!("```vector {}\n", self.name);
        for (k, v) in &self.values {
            let is_hex = v.len() > 64 && v.bytes().all(|c| c.is_ascii_hexdigit());
            if is_hex {
                let _ = writeln!(out, "{k}:");
                for line in v.as_bytes().chunks(64) {
                    let _ = writeln!(out, "  {}", std::str::from_utf8(line).unwrap());
                }
            } else {
                let _ = writeln!(out, "{k}: {v}");
            }
        }
        out.push_str("```\n");
        out
    }
}

/// Every vector block in `spec`, in order.
pub(crate) fn vectors(spec: &str) -> Vec<Vector> {
    let mut out = Vec::new();
    let mut current: Option<Vector> = None;
    for (n, line) in spec.lines().enumerate() {
        let n = n + 1;
        match &mut current {
            None => {
                if let Some(name) = line.trim_end().strip_prefix("```vector ") {
                    current = Some(Vector::new(name.trim()));
                }
            }
            Some(v) => {
                if line.trim_end() == "```" {
                    out.push(current.take().unwrap());
                } else if line.trim().is_empty() || line.trim_start().starts_with('#') {
                } else if line.starts_with([' ', '\t']) {
                    let last = v
                        .values
                        .last_mut()
                        .unwrap_or_else(|| panic!("SPEC.md:{n}: continuation before any key"));
                    last.1.push_str(line.trim());
                } else {
                    let (k, val) = line
                        .split_once(':')
                        .unwrap_or_else(|| panic!("SPEC.md:{n}: expected `key: value`"));
                    v.values
                        .push((k.trim().to_string(), val.trim().to_string()));
                }
            }
        }
    }
    assert!(current.is_none(), "SPEC.md: a vector block is not closed");
    out
}

/// The vector named `name` in SPEC.md.
pub(crate) fn vector(spec: &str, name: &str) -> Vector {
    let mut found: Vec<Vector> = vectors(spec)
        .into_iter()
        .filter(|v| v.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "SPEC.md must hold exactly one vector {name}"
    );
    found.pop().unwrap()
}

/// Compares a freshly computed vector with SPEC.md's (same keys, same order, same values), or
/// prints it when [`printing`]. Returns SPEC.md's copy (the computed one when printing).
pub(crate) fn check(spec: &str, computed: &Vector) -> Vector {
    if printing() {
        println!("{}", computed.render());
        return computed.clone();
    }
    let written = vector(spec, &computed.name);
    let keys = |v: &Vector| v.values.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&written),
        keys(computed),
        "vector {}: SPEC.md lists other keys than the test computes",
        computed.name
    );
    for ((k, want), (_, got)) in written.values.iter().zip(&computed.values) {
        assert_eq!(
            want, got,
            "vector {}: {k} in SPEC.md differs from the code's (run with RENKEI_PRINT_VECTORS=1 \
             to see the computed block)",
            computed.name
        );
    }
    written
}

/// The rows of the markdown table right after the marker line `<!-- {marker} -->`: each row
/// split into trimmed cells, header and separator rows left out.
pub(crate) fn table_after(spec: &str, marker: &str) -> Vec<Vec<String>> {
    let tag = format!("<!-- {marker} -->");
    let mut lines = spec.lines().skip_while(|l| l.trim() != tag);
    assert!(lines.next().is_some(), "SPEC.md has no marker {tag}");
    let rows: Vec<Vec<String>> = lines
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| {
            let l = l.trim();
            l.trim_start_matches('|')
                .trim_end_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert!(rows.len() >= 2, "SPEC.md: no table after {tag}");
    rows.into_iter().skip(2).collect()
}

/// Every marker line `<!-- {prefix} ... -->`, with the text after the prefix.
pub(crate) fn markers(spec: &str, prefix: &str) -> Vec<String> {
    let start = format!("<!-- {prefix} ");
    spec.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix(&start)
                .and_then(|r| r.strip_suffix("-->"))
                .map(|r| r.trim().to_string())
        })
        .collect()
}

/// Renders a markdown table (for printing tables into SPEC.md).
pub(crate) fn render_table(
    marker: &str,
    header: &[&str],
    align: &[&str],
    rows: &[Vec<String>],
) -> String {
    let mut out = format!("<!-- {marker} -->\n");
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}|", align.join("|"));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out
}
