//! Hints for misspelled names: the closest known name ("did you mean") and short lists of the
//! names that exist.

/// How many names a "known: ..." list shows before summarising the rest.
const LISTED_NAMES: usize = 8;

/// The candidate closest to `wanted`, when it is close enough to be a plausible typo: equal
/// ignoring case, or within an edit distance of about a third of the name.
pub(crate) fn closest<'a>(wanted: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let allowed = (wanted.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|candidate| (edit_distance(&wanted_lower, &candidate.to_lowercase()), *candidate))
        .filter(|(distance, candidate)| *distance <= allowed && *candidate != wanted)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// `A, B, C` (or `A, B, ... and 4 more`); `none` for an empty list.
pub(crate) fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let shown: Vec<&str> = names.iter().take(LISTED_NAMES).copied().collect();
    let mut text = shown.join(", ");
    if names.len() > LISTED_NAMES {
        text.push_str(&format!(", ... and {} more", names.len() - LISTED_NAMES));
    }
    text
}

/// `did you mean "Shipped"? (known: Shipped, Paid)` or `<fallback> (known: ...)`.
pub(crate) fn unknown_name_hint(wanted: &str, candidates: &[&str], fallback: &str) -> String {
    match closest(wanted, candidates) {
        Some(suggestion) => format!("did you mean \"{suggestion}\"? (known: {})", list(candidates)),
        None => format!("{fallback} (known: {})", list(candidates)),
    }
}

/// Levenshtein distance over characters.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    let mut current = vec![0; right.len() + 1];
    for (row, left_char) in left.chars().enumerate() {
        current[0] = row + 1;
        for (column, right_char) in right.iter().enumerate() {
            let substitution = previous[column] + usize::from(left_char != *right_char);
            current[column + 1] =
                substitution.min(previous[column + 1] + 1).min(current[column] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let states = ["Shipped", "Paid", "Created"];
        assert_eq!(closest("Shiped", &states), Some("Shipped"));
        assert_eq!(closest("paid", &states), Some("Paid"));
        assert_eq!(closest("Refunded", &states), None);
        assert_eq!(closest("Paid", &states), None, "an exact match is not a suggestion");
    }

    #[test]
    fn lists_are_bounded() {
        let many: Vec<String> = (0..10).map(|index| format!("S{index}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(list(&names), "S0, S1, S2, S3, S4, S5, S6, S7, ... and 2 more");
        assert_eq!(list(&[]), "none");
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
