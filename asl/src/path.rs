//! The JSONPath subset the interpreter implements: `$`, `$$` (the context
//! object), dotted fields (`$.a.b`), bracketed names (`$['a b']`) and array
//! indexes (`$.items[0]`). Anything else (`..`, `*`, filters, slices) is
//! refused when the definition is loaded.

use std::fmt;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// What a path starts from: the state's data (`$`) or the context object (`$$`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Data,
    Context,
}

/// A parsed path, keeping its source text for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    text: String,
    root: Root,
    segments: Vec<Segment>,
}

/// Why a path's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSyntaxError(pub String);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    pub fn parse(text: &str) -> Result<Self, PathSyntaxError> {
        let (root, mut rest) = if let Some(rest) = text.strip_prefix("$$") {
            (Root::Context, rest)
        } else if let Some(rest) = text.strip_prefix('$') {
            (Root::Data, rest)
        } else {
            return Err(PathSyntaxError(format!("'{text}' does not start with $")));
        };
        let mut segments = Vec::new();
        while !rest.is_empty() {
            let (segment, after) = parse_segment(text, rest)?;
            segments.push(segment);
            rest = after;
        }
        Ok(Self {
            text: text.to_owned(),
            root,
            segments,
        })
    }

    /// `$`: the whole of the state's data.
    pub fn data_root() -> Self {
        Self {
            text: "$".to_owned(),
            root: Root::Data,
            segments: Vec::new(),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn root(&self) -> Root {
        self.root
    }

    /// The value the path selects, if there is one.
    pub fn select<'v>(&self, data: &'v Value) -> Option<&'v Value> {
        let mut current = data;
        for segment in &self.segments {
            current = match (segment, current) {
                (Segment::Field(name), Value::Object(map)) => map.get(name)?,
                (Segment::Index(index), Value::Array(items)) => items.get(*index)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// `$['a']['b']`: how AWS spells a path in its error messages.
    pub fn normalized(&self) -> String {
        let mut out = String::from(match self.root {
            Root::Data => "$",
            Root::Context => "$$",
        });
        for segment in &self.segments {
            match segment {
                Segment::Field(name) => out.push_str(&format!("['{name}']")),
                Segment::Index(index) => out.push_str(&format!("[{index}]")),
            }
        }
        out
    }

    /// Writes `value` where the path points inside `target`, creating the
    /// missing objects on the way (ResultPath semantics). Fails when an
    /// existing node on the way is not a container of the right kind.
    pub fn insert(&self, target: &mut Value, value: Value) -> Result<(), String> {
        let Some((last, parents)) = self.segments.split_last() else {
            *target = value;
            return Ok(());
        };
        let mut current = target;
        for segment in parents {
            current = child_for_write(current, segment).ok_or_else(|| self.text.clone())?;
        }
        match (last, current) {
            (Segment::Field(name), Value::Object(map)) => {
                map.insert(name.clone(), value);
                Ok(())
            }
            (Segment::Index(index), Value::Array(items)) if *index < items.len() => {
                items[*index] = value;
                Ok(())
            }
            _ => Err(self.text.clone()),
        }
    }
}

fn child_for_write<'v>(current: &'v mut Value, segment: &Segment) -> Option<&'v mut Value> {
    match (segment, current) {
        (Segment::Field(name), Value::Object(map)) => Some(
            map.entry(name.clone())
                .or_insert_with(|| Value::Object(Map::new())),
        ),
        (Segment::Index(index), Value::Array(items)) => items.get_mut(*index),
        _ => None,
    }
}

fn parse_segment<'t>(whole: &str, rest: &'t str) -> Result<(Segment, &'t str), PathSyntaxError> {
    let unsupported = |what: &str| {
        PathSyntaxError(format!(
            "'{whole}': {what} is not supported (only $, .field, ['field'] and [index])"
        ))
    };
    if let Some(after_dot) = rest.strip_prefix('.') {
        if after_dot.starts_with('.') {
            return Err(unsupported("recursive descent (..)"));
        }
        let end = after_dot.find(['.', '[']).unwrap_or(after_dot.len());
        let name = &after_dot[..end];
        if name.is_empty() {
            return Err(PathSyntaxError(format!("'{whole}': empty field name")));
        }
        if name == "*" {
            return Err(unsupported("the wildcard *"));
        }
        return Ok((Segment::Field(name.to_owned()), &after_dot[end..]));
    }
    let Some(inside) = rest.strip_prefix('[') else {
        return Err(PathSyntaxError(format!(
            "'{whole}': expected . or [ at '{rest}'"
        )));
    };
    for quote in ['\'', '"'] {
        if let Some(quoted) = inside.strip_prefix(quote) {
            let end = quoted
                .find(quote)
                .ok_or_else(|| PathSyntaxError(format!("'{whole}': unclosed quote")))?;
            let after = quoted[end + 1..]
                .strip_prefix(']')
                .ok_or_else(|| unsupported("a bracket with several names"))?;
            return Ok((Segment::Field(quoted[..end].to_owned()), after));
        }
    }
    let end = inside
        .find(']')
        .ok_or_else(|| PathSyntaxError(format!("'{whole}': unclosed [")))?;
    let index_text = &inside[..end];
    if !index_text.is_empty() && index_text.bytes().all(|b| b.is_ascii_digit()) {
        let index = index_text
            .parse::<usize>()
            .map_err(|_| PathSyntaxError(format!("'{whole}': index {index_text} is too large")))?;
        return Ok((Segment::Index(index), &inside[end + 1..]));
    }
    Err(unsupported(&format!("[{index_text}]")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_fields_brackets_and_indexes() {
        let data = json!({"a": {"b c": [10, {"d": true}]}});
        let path = Path::parse("$.a['b c'][1].d").unwrap();
        assert_eq!(path.select(&data), Some(&json!(true)));
        assert_eq!(path.normalized(), "$['a']['b c'][1]['d']");
        assert_eq!(Path::parse("$").unwrap().select(&data), Some(&data));
        assert_eq!(Path::parse("$.a.x").unwrap().select(&data), None);
        assert_eq!(
            Path::parse("$$.Execution.Id").unwrap().root(),
            Root::Context
        );
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        for text in [
            "a.b",
            "$..a",
            "$.a[*]",
            "$.a[?(@.x)]",
            "$.a[0:2]",
            "$.*",
            "$.",
            "$.a[-1]",
        ] {
            assert!(Path::parse(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn insert_creates_nested_objects_and_refuses_scalars() {
        let mut data = json!({"a": 1});
        Path::parse("$.x.y")
            .unwrap()
            .insert(&mut data, json!(2))
            .unwrap();
        assert_eq!(data, json!({"a": 1, "x": {"y": 2}}));
        assert!(
            Path::parse("$.a.b")
                .unwrap()
                .insert(&mut data, json!(3))
                .is_err()
        );
        Path::parse("$")
            .unwrap()
            .insert(&mut data, json!("r"))
            .unwrap();
        assert_eq!(data, json!("r"));
    }
}
