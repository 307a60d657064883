//! Unit tests of `SpanIndex`: block and flow styles, multi-line strings, anchors, aliases and
//! merge keys, quoted keys, and path arithmetic.

use super::*;

fn index(text: &str) -> SpanIndex {
    match SpanIndex::build(text) {
        Ok(index) => index,
        Err(problems) => panic!("should index: {problems:?}"),
    }
}

fn at(line: u32, column: u32) -> Option<Position> {
    Some(Position::new(line, column))
}

#[test]
fn block_style_keys_and_values() {
    let spans = index("name: C\nstateMachines:\n  - name: M\n    initialState: A\n");
    assert_eq!(
        spans.get("name"),
        Some(NodeSpan { key: Some(Position::new(1, 1)), value: Position::new(1, 7) })
    );
    assert_eq!(spans.key_position("stateMachines"), at(2, 1));
    assert_eq!(spans.value_position("stateMachines[0]"), at(3, 5));
    assert_eq!(
        spans.key_position("stateMachines[0]"),
        at(3, 5),
        "sequence items have no key: their value stands in"
    );
    assert_eq!(spans.value_position("stateMachines[0].initialState"), at(4, 19));
    assert_eq!(spans.value_position(""), at(1, 1));
}

#[test]
fn flow_style_collections() {
    let spans = index("states: [{name: A, type: final}, {name: B}]\nmeta: {a: [1, 2]}\n");
    assert_eq!(spans.value_position("states"), at(1, 9));
    assert_eq!(spans.value_position("states[0]"), at(1, 10));
    assert_eq!(spans.value_position("states[0].type"), at(1, 26));
    assert_eq!(spans.key_position("states[1].name"), at(1, 35));
    assert_eq!(spans.value_position("states[1].name"), at(1, 41));
    assert_eq!(spans.value_position("meta.a[1]"), at(2, 15));
}

#[test]
fn multi_line_strings_do_not_shift_later_positions() {
    let text = "description: |\n  line one\n  line two\nfolded: >-\n  a\n  b\nquoted: \"x\n  y\"\nlast: 1\n";
    let spans = index(text);
    assert_eq!(
        spans.value_position("description"),
        at(2, 3),
        "block scalars start at their content"
    );
    assert_eq!(spans.key_position("folded"), at(4, 1));
    assert_eq!(spans.value_position("quoted"), at(7, 9));
    assert_eq!(
        spans.get("last"),
        Some(NodeSpan { key: Some(Position::new(9, 1)), value: Position::new(9, 7) })
    );
}

#[test]
fn aliases_index_the_anchored_content_under_the_use_site_path() {
    let text = "base: &t\n  from: A\n  to: B\nlist:\n  - *t\n  - other\n";
    let spans = index(text);
    assert_eq!(spans.value_position("list[0]"), at(5, 5), "the alias node points at `*t`");
    assert_eq!(
        spans.value_position("list[0].to"),
        at(3, 7),
        "its children point at the anchored text"
    );
    assert_eq!(spans.value_position("list[1]"), at(6, 5));
}

#[test]
fn merge_keys_bring_the_source_entries_and_explicit_keys_win() {
    let text = "base: &t\n  from: A\n  event: E\nitem:\n  event: F\n  <<: *t\n";
    let spans = index(text);
    assert_eq!(spans.value_position("item.from"), at(2, 9), "merged from the anchor");
    assert_eq!(
        spans.value_position("item.event"),
        at(5, 10),
        "the explicit key wins even before the merge"
    );
    assert!(!spans.contains("item.<<"), "the merge key itself is not a node of the result");
}

#[test]
fn merge_of_a_sequence_of_mappings_prefers_the_first() {
    let text = "a: &a {x: 1}\nb: &b {x: 2, y: 3}\nc:\n  <<: [*a, *b]\n";
    let spans = index(text);
    assert_eq!(spans.value_position("c.x"), at(1, 11));
    assert_eq!(spans.value_position("c.y"), at(2, 17));
}

#[test]
fn keys_that_are_not_identifiers_are_quoted() {
    let spans = index("contextSchema:\n  \"order id\": {type: text}\n  a.b: 1\n");
    assert_eq!(spans.value_position("contextSchema[\"order id\"].type"), at(2, 22));
    assert_eq!(spans.value_position("contextSchema[\"a.b\"]"), at(3, 8));
}

#[test]
fn locate_falls_back_to_the_nearest_ancestor() {
    let spans = index("stateMachines:\n  - name: M\n");
    assert_eq!(spans.locate("stateMachines[0].transitions[2].to"), Position::new(2, 5));
    assert_eq!(spans.locate_key("stateMachines[0].name"), Position::new(2, 5));
    assert_eq!(spans.locate("elsewhere"), Position::new(1, 1));
}

#[test]
fn path_at_finds_the_deepest_node() {
    let spans = index("a:\n  - b: 1\n");
    assert_eq!(spans.path_at(Position::new(2, 5)), Some("a[0].b"));
    assert_eq!(spans.path_at(Position::new(2, 8)), Some("a[0].b"));
    assert_eq!(spans.path_at(Position::new(9, 9)), None);
}

#[test]
fn path_arithmetic() {
    assert_eq!(child_key("", "name"), "name");
    assert_eq!(child_key("a[0]", "to"), "a[0].to");
    assert_eq!(child_key("a", "x y"), "a[\"x y\"]");
    assert_eq!(child_index("a", 3), "a[3]");
    assert_eq!(parent_path("a[0].to"), Some("a[0]"));
    assert_eq!(parent_path("a[0]"), Some("a"));
    assert_eq!(parent_path("a[\"x.y[1]\"]"), Some("a"));
    assert_eq!(parent_path("name"), Some(""));
    assert_eq!(parent_path(""), None);
}

#[test]
fn reports_syntax_errors_duplicate_keys_and_several_documents() {
    let problem_codes = |text: &str| match SpanIndex::build(text) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.into_iter().map(|problem| (problem.code, problem.at)).collect(),
    };
    assert_eq!(problem_codes("a: [1, 2\n"), vec![("XC0002", Position::new(1, 4))]);
    assert_eq!(problem_codes("a: 1\nb: 2\na: 3\n"), vec![("XC0004", Position::new(3, 1))]);
    assert_eq!(problem_codes("a: 1\n---\nb: 2\n"), vec![("XC0002", Position::new(2, 1))]);
    assert_eq!(problem_codes("a: *nowhere\n").first().map(|(code, _)| *code), Some("XC0002"));
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..8 {
        let previous = level - 1;
        let items = vec![format!("*l{previous}"); 10].join(", ");
        text.push_str(&format!("l{level}: &l{level} [{items}]\n"));
    }
    let result = SpanIndex::build(&text);
    assert!(
        matches!(&result, Err(problems) if problems[0].message.contains("expands to more than")),
        "{result:?}"
    );
}
