//! Free text in CSV files that a spreadsheet may open: export guards cells
//! a spreadsheet would run as formulas, and import reads them back unchanged.

/// What a spreadsheet takes for the start of a formula (OWASP's list for
/// CSV injection), and the apostrophe that neutralises it.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Free text as export writes it: a cell a spreadsheet would run as a
/// formula (`=HYPERLINK(…)`, `+1`, `@SUM`) gets an apostrophe before it, as
/// OWASP recommends; so does one that already starts with an apostrophe,
/// so that import can take exactly one off again ([`as_imported`]).
pub fn neutralise(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().next().is_some_and(needs_apostrophe) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

/// Whether a cell starting with `c` gets an apostrophe before it: the start
/// of a formula, or an apostrophe of its own.
fn needs_apostrophe(c: char) -> bool {
    FORMULA_STARTS.contains(&c) || c == '\''
}

/// Free text as import reads it: the apostrophe [`neutralise`] put before a
/// cell is taken off again, so an export imports back unchanged.
pub fn as_imported(text: &str) -> &str {
    match text.strip_prefix('\'') {
        Some(rest) if rest.chars().next().is_some_and(needs_apostrophe) => rest,
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_come_back_unchanged() {
        for (text, written) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+41 1", "'+41 1"),
            ("-80 freezer", "'-80 freezer"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tindented", "'\tindented"),
            ("'quoted", "''quoted"),
            ("'=already", "''=already"),
            ("rack 4, box 2", "rack 4, box 2"),
            ("", ""),
        ] {
            assert_eq!(neutralise(text), written, "{text:?}");
            assert_eq!(as_imported(written), text, "{written:?}");
        }
    }
}
