//! A positioned YAML tree built from the parser's marked events: just enough structure to know
//! where every node of the document starts, after anchors, aliases and merge keys (`<<`) are
//! resolved the way the deserializer resolves them.
//!
//! This pass also reports the problems the position index is best placed to see: syntax errors,
//! duplicate keys, several documents in one file, and alias expansions that grow too large.

use crate::diagnostic::{Position, codes};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError, Span};
use std::collections::HashMap;

/// Most nodes a document may expand to (aliases count once per use): a guard against alias bombs.
const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted (the tree is built recursively).
const MAX_DEPTH: usize = 256;

/// One node of the document with the position where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Where the node starts (for an alias: where the alias is used).
    pub(crate) at: Position,
    /// Number of nodes in this subtree, itself included.
    pub(crate) size: usize,
    /// Scalar, sequence or mapping.
    pub(crate) kind: NodeKind,
}

/// The three YAML node kinds.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// A scalar's text after escape processing (whatever its style).
    Scalar(String),
    /// Items in order.
    Sequence(Vec<Node>),
    /// Entries after merge keys are expanded (explicit keys win over merged ones).
    Mapping(Vec<Entry>),
}

/// A mapping entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The key as text (non-scalar keys are rendered as `<complex key>`).
    pub(crate) key: String,
    /// Where the key starts.
    pub(crate) key_at: Position,
    /// The value.
    pub(crate) value: Node,
}

/// A problem found while building the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeProblem {
    /// Stable code (`XC0002` syntax, `XC0004` duplicate key).
    pub(crate) code: &'static str,
    /// What is wrong.
    pub(crate) message: String,
    /// Where.
    pub(crate) at: Position,
    /// How to fix it.
    pub(crate) hint: String,
}

/// Builds the tree of the single document of `text`; `Ok(None)` for an empty document.
///
/// On a syntax error the result holds that one error; otherwise it holds every duplicate key.
pub(crate) fn build_tree(text: &str) -> Result<Option<Node>, Vec<TreeProblem>> {
    let mut builder = TreeBuilder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        problems: Vec::new(),
    };
    let root = builder.document().map_err(|problem| vec![problem])?;
    if builder.problems.is_empty() { Ok(root) } else { Err(builder.problems) }
}

struct TreeBuilder<'input> {
    parser: Parser<'input, serde_saphyr::granit_parser::StrInput<'input>>,
    /// Anchored nodes by anchor id, for aliases.
    anchors: HashMap<usize, Node>,
    /// Nodes created so far, alias expansions included.
    nodes: usize,
    /// Non-fatal problems (duplicate keys).
    problems: Vec<TreeProblem>,
}

/// The 1-based position where a parser span starts.
fn start_of(span: &Span) -> Position {
    position_of(span.start.line(), span.start.col())
}

/// Converts the parser's 1-based line and 0-based column.
fn position_of(line: usize, col: usize) -> Position {
    let clamp = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
    Position::new(clamp(line), clamp(col.saturating_add(1)))
}

fn syntax_problem(error: &ScanError) -> TreeProblem {
    let marker = error.marker();
    TreeProblem {
        code: codes::YAML_SYNTAX,
        message: format!("YAML syntax error: {}", error.info()),
        at: position_of(marker.line(), marker.col()),
        hint: "fix the YAML at this position (indentation with spaces, closed quotes and brackets, `key: value` pairs)".into(),
    }
}

impl<'input> TreeBuilder<'input> {
    /// The next event; the end of input is reported as a syntax error (the parser always ends
    /// with `StreamEnd`, so running out means the input stopped in the middle of a node).
    fn next_event(&mut self) -> Result<(Event<'input>, Span), TreeProblem> {
        match self.parser.next() {
            Some(Ok(event)) => Ok(event),
            Some(Err(error)) => Err(syntax_problem(&error)),
            None => Err(TreeProblem {
                code: codes::YAML_SYNTAX,
                message: "YAML syntax error: unexpected end of input".into(),
                at: Position::new(1, 1),
                hint: "the document stops in the middle of a node".into(),
            }),
        }
    }

    /// Reads the whole stream: at most one document is allowed.
    fn document(&mut self) -> Result<Option<Node>, TreeProblem> {
        let mut root = None;
        let mut documents = 0usize;
        loop {
            let (event, span) = self.next_event()?;
            match event {
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart(..) => {
                    documents += 1;
                    if documents > 1 {
                        return Err(TreeProblem {
                            code: codes::YAML_SYNTAX,
                            message: "the file holds more than one YAML document".into(),
                            at: start_of(&span),
                            hint: "a component file holds exactly one document: split it into one file per component".into(),
                        });
                    }
                }
                Event::DocumentEnd | Event::StreamStart => {}
                event if event.is_node() => {
                    root = Some(self.node(event, &span, 0)?);
                }
                _ => {}
            }
        }
    }

    fn count(&mut self, added: usize, at: Position) -> Result<(), TreeProblem> {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            return Err(TreeProblem {
                code: codes::YAML_SYNTAX,
                message: format!("the document expands to more than {MAX_NODES} nodes (aliases included)"),
                at,
                hint: "aliases (`*name`) repeat their anchor's whole content: use fewer nested aliases".into(),
            });
        }
        Ok(())
    }

    /// Builds the node that starts with `event`.
    fn node(
        &mut self,
        event: Event<'input>,
        span: &Span,
        depth: usize,
    ) -> Result<Node, TreeProblem> {
        let at = start_of(span);
        if depth > MAX_DEPTH {
            return Err(TreeProblem {
                code: codes::YAML_SYNTAX,
                message: format!("the document nests deeper than {MAX_DEPTH} levels"),
                at,
                hint: "flatten the structure".into(),
            });
        }
        let (node, anchor) = match event {
            Event::Scalar(text, _, anchor, _) => {
                self.count(1, at)?;
                (Node { at, size: 1, kind: NodeKind::Scalar(text.into_owned()) }, anchor)
            }
            Event::SequenceStart(_, anchor, _) => (self.sequence(at, depth)?, anchor),
            Event::MappingStart(_, anchor, _) => (self.mapping(at, depth)?, anchor),
            Event::Alias(anchor) => {
                let Some(anchored) = self.anchors.get(&anchor) else {
                    return Err(TreeProblem {
                        code: codes::YAML_SYNTAX,
                        message: "alias refers to an anchor that is not defined before it".into(),
                        at,
                        hint: "define the anchor (`&name`) before using the alias (`*name`)".into(),
                    });
                };
                let mut copy = anchored.clone();
                self.count(copy.size, at)?;
                copy.at = at;
                return Ok(copy);
            }
            _ => {
                return Err(TreeProblem {
                    code: codes::YAML_SYNTAX,
                    message: "YAML syntax error: a node was expected here".into(),
                    at,
                    hint: String::new(),
                });
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn sequence(&mut self, at: Position, depth: usize) -> Result<Node, TreeProblem> {
        self.count(1, at)?;
        let mut items = Vec::new();
        let mut size = 1usize;
        loop {
            let (event, span) = self.next_event()?;
            match event {
                Event::SequenceEnd => break,
                event if event.is_node() => {
                    let item = self.node(event, &span, depth + 1)?;
                    size = size.saturating_add(item.size);
                    items.push(item);
                }
                _ => {}
            }
        }
        Ok(Node { at, size, kind: NodeKind::Sequence(items) })
    }

    fn mapping(&mut self, at: Position, depth: usize) -> Result<Node, TreeProblem> {
        self.count(1, at)?;
        let mut explicit: Vec<Entry> = Vec::new();
        let mut merged: Vec<Entry> = Vec::new();
        loop {
            let (event, span) = self.next_event()?;
            let key_at = start_of(&span);
            let is_merge_key =
                matches!(&event, Event::Scalar(text, ScalarStyle::Plain, _, None) if text == "<<");
            let key = match event {
                Event::MappingEnd => break,
                event if event.is_node() => self.node(event, &span, depth + 1)?,
                _ => continue,
            };
            let (value_event, value_span) = self.next_event()?;
            let value = self.node(value_event, &value_span, depth + 1)?;
            if is_merge_key && let Some(sources) = merge_sources(&value) {
                for source in sources {
                    for entry in source {
                        if !merged.iter().any(|existing| existing.key == entry.key) {
                            merged.push(entry.clone());
                        }
                    }
                }
                continue;
            }
            let key = match key.kind {
                NodeKind::Scalar(text) => text,
                _ => "<complex key>".to_owned(),
            };
            if let Some(first) = explicit.iter().find(|existing| existing.key == key) {
                self.problems.push(TreeProblem {
                    code: codes::DUPLICATE_KEY,
                    message: format!("key `{key}` appears twice in the same mapping"),
                    at: key_at,
                    hint: format!(
                        "keep one of the two (the first is at line {}, column {})",
                        first.key_at.line, first.key_at.column
                    ),
                });
                continue;
            }
            explicit.push(Entry { key, key_at, value });
        }
        merged.retain(|entry| !explicit.iter().any(|existing| existing.key == entry.key));
        explicit.extend(merged);
        let size = explicit
            .iter()
            .fold(1usize, |total, entry| total.saturating_add(1).saturating_add(entry.value.size));
        Ok(Node { at, size, kind: NodeKind::Mapping(explicit) })
    }
}

/// The mappings a merge key's value brings in, in precedence order; `None` when the value is
/// not a mapping or a sequence of mappings (the deserializer then reports it).
fn merge_sources(value: &Node) -> Option<Vec<&[Entry]>> {
    match &value.kind {
        NodeKind::Mapping(entries) => Some(vec![entries.as_slice()]),
        NodeKind::Sequence(items) => items
            .iter()
            .map(|item| match &item.kind {
                NodeKind::Mapping(entries) => Some(entries.as_slice()),
                _ => None,
            })
            .collect(),
        NodeKind::Scalar(_) => None,
    }
}
