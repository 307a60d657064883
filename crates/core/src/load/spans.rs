//! `SpanIndex`: where every node of a component file starts, by YAML path.
//!
//! Paths name nodes the way users read them: `stateMachines[0].transitions[3].to`. Keys that are
//! not plain identifiers are quoted (`contextSchema["order id"]`); the root is the empty path.
//! Nodes reached through an alias are indexed under the path where the alias is used, with the
//! positions of the anchored text (the alias node itself points at the `*alias`).

use super::tree::{Node, NodeKind, TreeProblem, build_tree};
use crate::diagnostic::Position;
use std::collections::HashMap;

/// Where a node starts, and where its key starts when it is a mapping value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpan {
    /// Position of the key (`None` for sequence items and the root).
    pub key: Option<Position>,
    /// Position of the value.
    pub value: Position,
}

/// Node positions of one document, by YAML path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanIndex {
    nodes: HashMap<String, NodeSpan>,
}

impl SpanIndex {
    /// Indexes the single YAML document of `text`. An empty document gives an empty index.
    pub(crate) fn build(text: &str) -> Result<SpanIndex, Vec<TreeProblem>> {
        let mut index = SpanIndex::default();
        if let Some(root) = build_tree(text)? {
            index.insert_node(&root, String::new(), None);
        }
        Ok(index)
    }

    fn insert_node(&mut self, node: &Node, path: String, key: Option<Position>) {
        match &node.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Sequence(items) => {
                for (position, item) in items.iter().enumerate() {
                    self.insert_node(item, child_index(&path, position), None);
                }
            }
            NodeKind::Mapping(entries) => {
                for entry in entries {
                    self.insert_node(
                        &entry.value,
                        child_key(&path, &entry.key),
                        Some(entry.key_at),
                    );
                }
            }
        }
        self.nodes.insert(path, NodeSpan { key, value: node.at });
    }

    /// The span of the node at `path`.
    pub fn get(&self, path: &str) -> Option<NodeSpan> {
        self.nodes.get(path).copied()
    }

    /// Whether the document has a node at `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// Where the value at `path` starts.
    pub fn value_position(&self, path: &str) -> Option<Position> {
        self.get(path).map(|span| span.value)
    }

    /// Where the key of `path` starts (the value's position for sequence items and the root).
    pub fn key_position(&self, path: &str) -> Option<Position> {
        self.get(path).map(|span| span.key.unwrap_or(span.value))
    }

    /// The value position of `path`, or of its nearest ancestor present in the document (a key
    /// that is absent points at the mapping that lacks it); line 1, column 1 when nothing matches.
    pub fn locate(&self, path: &str) -> Position {
        self.nearest(path).map(|span| span.value).unwrap_or(Position::new(1, 1))
    }

    /// Like [`SpanIndex::locate`] but prefers the key's position.
    pub fn locate_key(&self, path: &str) -> Position {
        self.nearest(path).map(|span| span.key.unwrap_or(span.value)).unwrap_or(Position::new(1, 1))
    }

    fn nearest(&self, path: &str) -> Option<NodeSpan> {
        let mut current = Some(path);
        while let Some(candidate) = current {
            if let Some(span) = self.get(candidate) {
                return Some(span);
            }
            current = parent_path(candidate);
        }
        None
    }

    /// The deepest path whose key or value starts exactly at `position` (used to name the node
    /// a deserialization error points at). Ties go to the alphabetically first path.
    pub fn path_at(&self, position: Position) -> Option<&str> {
        self.nodes
            .iter()
            .filter(|(_, span)| span.value == position || span.key == Some(position))
            .map(|(path, _)| path.as_str())
            .max_by(|left, right| left.len().cmp(&right.len()).then_with(|| right.cmp(left)))
    }

    /// Number of indexed nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the document was empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All indexed paths with their spans, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, NodeSpan)> {
        self.nodes.iter().map(|(path, span)| (path.as_str(), *span))
    }
}

/// Whether `key` can be written after a dot without quotes.
fn is_plain_key(key: &str) -> bool {
    let mut characters = key.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_' || first == '$')
        && characters.all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '_' | '$' | '-')
        })
}

/// The path of key `key` inside the mapping at `parent`.
pub fn child_key(parent: &str, key: &str) -> String {
    if is_plain_key(key) {
        if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        format!("{parent}[{quoted}]")
    }
}

/// The path of item `index` inside the sequence at `parent`.
pub fn child_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path of the node containing `path`; `None` for the root.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // The last segment starts at the last `.` or `[` that is outside a quoted key.
    let mut last_start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (offset, character) in path.char_indices() {
        if in_quotes {
            match character {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match character {
            '"' => in_quotes = true,
            '.' | '[' => last_start = offset,
            _ => {}
        }
    }
    Some(&path[..last_start])
}

#[cfg(test)]
#[path = "spans_tests.rs"]
mod tests;
