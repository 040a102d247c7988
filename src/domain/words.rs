//! The words of log text: how a log search's `contains` matches a body, and what the needle
//! filters of sealed log blocks index ([`crate::seal::needles`]).
//!
//! `contains` matches a phrase at word boundaries, not any substring: `timed out` matches
//! `request timed out after 5s` but not `timed outage`, and `8f3a` does not match `x8f3a2b`.
//! That makes every word of the phrase a whole word of a matching body, so that a block whose
//! filter lacks one of them cannot match and is not read. A substring rule would let nothing
//! but a scan prove a block holds no match.

/// Whether `c` belongs to a word: letters and digits of any script, and `_`.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The words of `text`: its longest runs of word characters, in order.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
}

/// Whether `text` holds `phrase` at word boundaries: an occurrence whose first character, if a
/// word character, follows no word character, and whose last, if a word character, precedes
/// none. The empty phrase is everywhere. Case-sensitive.
pub fn has_phrase(text: &str, phrase: &str) -> bool {
    let (Some(first), Some(last)) = (phrase.chars().next(), phrase.chars().next_back()) else {
        return true;
    };
    let (open_start, open_end) = (is_word_char(first), is_word_char(last));
    let mut from = 0;
    while let Some(i) = text[from..].find(phrase) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        let joined_before = open_start && before.is_some_and(is_word_char);
        let joined_after = open_end && after.is_some_and(is_word_char);
        if !joined_before && !joined_after {
            return true;
        }
        // Occurrences may overlap (`a a` in `aa a a`): go on from the next character.
        from = at + text[at..].chars().next().map_or(1, char::len_utf8);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_phrase_matches_at_word_boundaries_only() {
        assert!(has_phrase("request timed out after 5s", "timed out"));
        assert!(!has_phrase("request timed outage", "timed out"));
        assert!(!has_phrase("x8f3a2b", "8f3a"));
        assert!(has_phrase("order=8f3a,", "8f3a"));
        assert!(has_phrase("order=8f3a", "=8f3a"));
        // Punctuation at the phrase's edge matches wherever it is.
        assert!(has_phrase("host:8080x", "host:"));
        assert!(!has_phrase("host:8080x", ":8080"));
        assert!(has_phrase("aa a a", "a a"));
        assert!(has_phrase("ünïcode wörds", "wörds"));
        assert!(!has_phrase("wördsy", "wörds"));
        assert!(has_phrase("anything", ""));
        assert!(!has_phrase("", "a"));
        assert_eq!(
            words("GET /api/v1/users?id=42 -> 200_OK").collect::<Vec<_>>(),
            ["GET", "api", "v1", "users", "id", "42", "200_OK"]
        );
    }

    /// The rule, by brute force: some start at which the phrase is there and both ends are
    /// boundaries.
    fn model(text: &str, phrase: &str) -> bool {
        if phrase.is_empty() {
            return true;
        }
        let starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        starts.into_iter().any(|at| {
            text[at..].starts_with(phrase) && {
                let before = text[..at].chars().next_back();
                let after = text[at + phrase.len()..].chars().next();
                let first = phrase.chars().next().unwrap();
                let last = phrase.chars().next_back().unwrap();
                let joined_before = is_word_char(first) && before.is_some_and(is_word_char);
                let joined_after = is_word_char(last) && after.is_some_and(is_word_char);
                !joined_before && !joined_after
            }
        })
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec!['a', 'b', ' ', '-', 'é', '_']),
            0..24,
        )
        .prop_map(|c| c.into_iter().collect())
    }

    proptest! {
        #[test]
        fn has_phrase_is_the_rule(t in text(), p in text()) {
            prop_assert_eq!(has_phrase(&t, &p), model(&t, &p));
        }

        /// What lets a filter of a body's words skip it: a phrase found means each of its
        /// words is a word of the body.
        #[test]
        fn a_matching_body_holds_every_word_of_the_phrase(t in text(), p in text()) {
            if has_phrase(&t, &p) {
                let body: Vec<&str> = words(&t).collect();
                for w in words(&p) {
                    prop_assert!(body.contains(&w), "{w:?} of {p:?} not a word of {t:?}");
                }
            }
        }
    }
}
