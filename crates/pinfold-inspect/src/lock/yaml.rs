//! A small YAML document tree whose scalars remember where they were written, built from
//! `saphyr-parser` events.
//!
//! Why not a serde YAML crate: `pinfold lock` must say on which line each `image:` sits and
//! `--rewrite` must edit exactly that text, so every scalar needs its position; serde-based
//! crates give positions only for errors. Only what the finders need is kept: mappings with
//! string keys in order, sequences, scalars with their start position, and aliases resolved to
//! the anchored node (so `image: *base` reports and rewrites the anchor's text).

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Deepest nesting accepted; real manifests stay far below, a hostile file does not. Below
/// saphyr's own limit (256) so the error message is ours.
const MAX_DEPTH: usize = 200;
/// Most nodes in one file (aliases count as the nodes they copy): bounds alias bombs.
const MAX_NODES: usize = 1_000_000;

/// Where a scalar starts: 1-based line and column, and the byte offset in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Byte offset of the scalar's first character (its quote or anchor, if any) in the text.
    pub offset: usize,
}

/// A YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A scalar: its value, whether it was written plain (unquoted), and where it starts.
    Scalar {
        /// The value, quotes and escapes resolved.
        value: String,
        /// Written without quotes (so `null`, `~` and numbers are not strings).
        plain: bool,
        /// Where it starts.
        pos: Pos,
    },
    /// A sequence.
    Sequence(Vec<Node>),
    /// A mapping; keys that are not scalars are kept as their position only (`None`).
    Mapping(Vec<(Option<String>, Node)>, Pos),
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Mapping(entries, _) => entries
                .iter()
                .find(|(k, _)| k.as_deref() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The scalar's text, if this is a string-like scalar.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// A YAML syntax error with its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What the parser said.
    pub message: String,
}

/// Parses every document of a YAML stream (`---`-separated).
///
/// # Errors
///
/// [`YamlError`] for a syntax error, nesting deeper than 200, more than a million nodes or an
/// alias to an unknown anchor.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    // saphyr reports positions as character indices; map them to byte offsets once.
    let char_to_byte: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut builder = Builder {
        char_to_byte,
        anchors: HashMap::new(),
        stack: Vec::new(),
        documents: Vec::new(),
        nodes: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let start = span.start;
        let pos = Pos {
            line: start.line(),
            column: start.col() + 1,
            offset: builder
                .char_to_byte
                .get(start.index())
                .copied()
                .unwrap_or(text.len()),
        };
        builder.event(event, pos)?;
    }
    Ok(builder.documents)
}

/// A collection being filled: a sequence, or a mapping with the key waiting for its value.
enum Open {
    Sequence(Vec<Node>, usize),
    Mapping(
        Vec<(Option<String>, Node)>,
        Option<Option<String>>,
        usize,
        Pos,
    ),
}

struct Builder {
    char_to_byte: Vec<usize>,
    anchors: HashMap<usize, Node>,
    stack: Vec<Open>,
    documents: Vec<Node>,
    nodes: usize,
}

impl Builder {
    fn error(pos: Pos, message: impl Into<String>) -> YamlError {
        YamlError {
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }

    fn event(&mut self, event: Event<'_>, pos: Pos) -> Result<(), YamlError> {
        match event {
            Event::Scalar(value, style, anchor, _tag) => {
                let node = Node::Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    pos,
                };
                self.finish(node, anchor, pos)?;
            }
            Event::Alias(anchor) => {
                let node = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| Self::error(pos, "alias to an unknown anchor"))?;
                self.nodes = self.nodes.saturating_add(count(&node));
                self.finish(node, 0, pos)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(pos)?;
                self.stack.push(Open::Sequence(Vec::new(), anchor));
            }
            Event::MappingStart(anchor, _) => {
                self.open(pos)?;
                self.stack
                    .push(Open::Mapping(Vec::new(), None, anchor, pos));
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Open::Sequence(items, anchor)) => {
                    self.finish(Node::Sequence(items), anchor, pos)?
                }
                _ => return Err(Self::error(pos, "unbalanced sequence end")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Open::Mapping(entries, _, anchor, start)) => {
                    self.finish(Node::Mapping(entries, start), anchor, pos)?
                }
                _ => return Err(Self::error(pos, "unbalanced mapping end")),
            },
            Event::DocumentStart(_) => self.anchors.clear(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    fn open(&mut self, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Self::error(
                pos,
                format!("nesting deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// Attaches a complete node to its parent (or ends a document).
    fn finish(&mut self, node: Node, anchor: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(1);
        if self.nodes > MAX_NODES {
            return Err(Self::error(pos, format!("more than {MAX_NODES} nodes")));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Open::Sequence(items, _)) => items.push(node),
            Some(Open::Mapping(entries, key, _, _)) => match key.take() {
                None => {
                    *key = Some(match node {
                        Node::Scalar { value, .. } => Some(value),
                        _ => None,
                    })
                }
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

/// Nodes in a subtree, so repeated aliases count against [`MAX_NODES`].
fn count(node: &Node) -> usize {
    match node {
        Node::Scalar { .. } => 1,
        Node::Sequence(items) => 1 + items.iter().map(count).sum::<usize>(),
        Node::Mapping(entries, _) => 1 + entries.iter().map(|(_, v)| count(v)).sum::<usize>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_know_line_column_and_byte_offset() {
        let text = "# é\nservices:\n  app:\n    image: \"ruby:3.3\"\n---\nb: &x plain\nc: *x\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        let image = docs[0].get("services").unwrap().get("app").unwrap();
        let Some(Node::Scalar { value, plain, pos }) = image.get("image") else {
            panic!("no image scalar")
        };
        assert_eq!(value, "ruby:3.3");
        assert!(!plain);
        assert_eq!((pos.line, pos.column), (4, 12));
        assert_eq!(&text[pos.offset..pos.offset + 10], "\"ruby:3.3\"");
        // The alias is the anchored node, position included.
        assert_eq!(docs[1].get("c"), docs[1].get("b"));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse_documents("a: 1\nb: [1, 2\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
        let err = parse_documents("a: *nope\n").unwrap_err();
        assert!(err.message.contains("anchor"), "{err}");
    }

    #[test]
    fn depth_is_bounded() {
        let text = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let err = parse_documents(&text).unwrap_err();
        assert!(err.message.contains("nesting"), "{err}");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse_documents(&text).unwrap_err();
        assert!(err.message.contains("nodes"), "{err}");
    }
}
