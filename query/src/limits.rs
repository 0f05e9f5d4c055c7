//! How large and how deep a question may be. The text is checked before any
//! parsing (its length, how deep its parentheses nest, how many AND/OR/NOT
//! it has), and the parsed query right after (nesting of AND/OR/NOT, number
//! of predicates, values in an IN list, measures, dimensions), at the
//! coordinator and at every node, so that a hostile question is refused in
//! microseconds instead of keeping a core busy. The limits are generous for
//! real feasibility questions: the largest realistic ones (a few dozen
//! diagnosis codes, two or three levels of parentheses) stay far below them.

use bonebank_schemas::wire::QueryLimits;
use bonebank_schemas::{FeasibilityQuery, Filter};

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::{Refusal, SHAPE_HINT};

/// The limits every bonebank service holds questions to.
pub const LIMITS: QueryLimits = QueryLimits {
    max_sql_bytes: 8 * 1024,
    max_body_bytes: 64 * 1024,
    max_nesting: 10,
    max_boolean_words: 200,
    max_predicates: 64,
    max_in_values: 256,
    max_measures: 8,
    max_group_by: 8,
};

/// Questions whose SQL is at most this long are parsed and checked on the
/// thread that received them; longer ones on a blocking thread. Within the
/// limits above, a question this short is a few dozen tokens at most, and
/// parsing it takes microseconds; moving it to another thread would cost
/// more than the work (two thread switches).
pub const INLINE_SQL_BYTES: usize = 1024;

/// Whether a question with this SQL (or none: a structured query, checked
/// in one linear walk) is parsed where it was received.
pub fn parse_inline(sql: Option<&str>) -> bool {
    sql.is_none_or(|s| s.len() <= INLINE_SQL_BYTES)
}

const HINT: &str = "feasibility questions are short: split a very large one into several";

fn over(what: String, limit: usize) -> Refusal {
    Refusal::new(format!("{what}; at most {limit} are allowed"), HINT)
}

/// Checks SQL text before it is parsed: one pass over sqlparser's own
/// tokens (the tokenizer is linear, the parser can backtrack), so the check
/// sees the text exactly as the parser will and its cost does not depend on
/// what the parser would make of it.
pub fn check_text(sql: &str) -> Result<(), Refusal> {
    let l = &LIMITS;
    if sql.len() > l.max_sql_bytes {
        return Err(Refusal::new(
            format!(
                "the question is {} bytes long; at most {} are allowed",
                sql.len(),
                l.max_sql_bytes
            ),
            HINT,
        ));
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| Refusal::new(format!("the SQL could not be read: {e}"), SHAPE_HINT))?;
    let (mut depth, mut deepest, mut words) = (0usize, 0usize, 0usize);
    // Whether the last token other than whitespace was a bare NOT.
    let mut after_not = false;
    for (i, token) in tokens.iter().enumerate() {
        // The parser tries a sign after NOT two ways, and each NOT after it
        // again: a chain of them takes time that doubles with every NOT (18
        // took a third of a second, 110 more than a minute). A sign after
        // NOT means nothing in the query language.
        if after_not && matches!(token, Token::Plus | Token::Minus) {
            return Err(Refusal::new(
                "a sign (+ or -) right after NOT is not part of the query language",
                SHAPE_HINT,
            ));
        }
        if !matches!(token, Token::Whitespace(_)) {
            after_not = matches!(
                token,
                Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("NOT")
            );
        }
        match token {
            Token::Word(w) => {
                if w.quote_style.is_none() {
                    if let Some(c) = w
                        .value
                        .chars()
                        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
                    {
                        return Err(not_in_language(&c.to_string()));
                    }
                    if ["AND", "OR", "NOT"]
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(&w.value))
                    {
                        words += 1;
                    }
                }
            }
            Token::LParen => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::RParen => depth = depth.saturating_sub(1),
            // The parser backtracks over long dotted chains, badly so when
            // one ends in a dot: a dot belongs only between the table's name
            // and a column's, written together (numbers are tokens of their
            // own).
            Token::Period => {
                let word = |t: Option<&Token>| matches!(t, Some(Token::Word(_)));
                let joins_two_words = i >= 1
                    && word(tokens.get(i - 1))
                    && word(tokens.get(i + 1))
                    && !(i >= 2 && matches!(tokens[i - 2], Token::Period));
                if !joins_two_words {
                    return Err(Refusal::new(
                        "a dot outside quotes belongs only after the table name (samples.sex)",
                        SHAPE_HINT,
                    ));
                }
            }
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::Whitespace(_)
            | Token::Comma
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Minus
            | Token::Plus
            | Token::Mul
            | Token::SemiColon
            | Token::EOF => {}
            // Brackets, operators and string forms the query language does
            // not have, some of which the parser backtracks over for
            // seconds: refused unread.
            other => return Err(not_in_language(&other.to_string())),
        }
    }
    if deepest > l.max_nesting {
        return Err(over(
            format!("the question nests parentheses {deepest} deep"),
            l.max_nesting,
        ));
    }
    if words > l.max_boolean_words {
        return Err(over(
            format!("the question has {words} AND, OR and NOT"),
            l.max_boolean_words,
        ));
    }
    Ok(())
}

fn not_in_language(text: &str) -> Refusal {
    let mut chars = text.chars();
    let shown = match (chars.next(), chars.next()) {
        (Some(c), None) => format!("the character {c:?}"),
        _ => format!("{text:?}"),
    };
    Refusal::new(
        format!("{shown} outside quotes is not part of the query language"),
        SHAPE_HINT,
    )
}

/// Checks a parsed query, or one sent as JSON, before anything else is done
/// with it.
pub fn check_query(q: &FeasibilityQuery) -> Result<(), Refusal> {
    let l = &LIMITS;
    if q.measures.len() > l.max_measures {
        return Err(over(
            format!("the question has {} measures", q.measures.len()),
            l.max_measures,
        ));
    }
    if q.group_by.len() > l.max_group_by {
        return Err(over(
            format!("the question groups by {} columns", q.group_by.len()),
            l.max_group_by,
        ));
    }
    let nesting = nesting(&q.filter, None);
    if nesting > l.max_nesting {
        return Err(over(
            format!("the filter nests AND, OR and NOT {nesting} deep"),
            l.max_nesting,
        ));
    }
    let (mut predicates, mut longest, mut empty_list) = (0, 0, false);
    q.filter.visit(&mut |f| match f {
        Filter::In { values, .. } => {
            predicates += 1;
            longest = longest.max(values.len());
        }
        Filter::Range { .. } | Filter::Prefix { .. } | Filter::IsNull { .. } => predicates += 1,
        Filter::And(c) | Filter::Or(c) => empty_list |= c.is_empty(),
        Filter::True | Filter::Not(_) => {}
    });
    if empty_list {
        // It has no SQL, and an empty OR keeps nothing while its canonical
        // form would keep everything.
        return Err(Refusal::new(
            "the filter has an empty AND or OR list",
            "give every AND and OR at least one condition, or leave the filter out",
        ));
    }
    if predicates > l.max_predicates {
        return Err(over(
            format!("the filter has {predicates} conditions"),
            l.max_predicates,
        ));
    }
    if longest > l.max_in_values {
        return Err(over(
            format!("an IN list has {longest} values"),
            l.max_in_values,
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    And,
    Or,
}

/// Levels of AND, OR and NOT: an AND directly inside an AND (or OR inside
/// OR) is one list, as `a AND b AND c` is, and adds no level.
fn nesting(f: &Filter, parent: Option<Op>) -> usize {
    let list = |children: &[Filter], op: Op| {
        let inner = children
            .iter()
            .map(|c| nesting(c, Some(op)))
            .max()
            .unwrap_or(0);
        inner + usize::from(parent != Some(op))
    };
    match f {
        Filter::And(c) => list(c, Op::And),
        Filter::Or(c) => list(c, Op::Or),
        Filter::Not(inner) => 1 + nesting(inner, None),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse;

    #[test]
    fn only_short_questions_are_parsed_where_they_arrive() {
        assert!(parse_inline(None));
        assert!(parse_inline(Some(&"x".repeat(INLINE_SQL_BYTES))));
        assert!(!parse_inline(Some(&"x".repeat(INLINE_SQL_BYTES + 1))));
        assert!(!parse_inline(Some(&"x".repeat(LIMITS.max_sql_bytes))));
    }

    fn refused(sql: &str) -> String {
        parse(sql).unwrap_err().message
    }

    #[test]
    fn realistic_questions_pass() {
        let codes: Vec<String> = (0..40).map(|i| format!("'S72.{}'", i % 10)).collect();
        for sql in [
            "SELECT sample_type, COUNT(DISTINCT donor_id), COUNT(*) FROM samples WHERE sex = 'Female' AND age_at_sampling BETWEEN 50 AND 70 AND diagnosis LIKE 'S72%' GROUP BY sample_type".to_owned(),
            "SELECT COUNT(*) FROM samples WHERE (sex = 'Female' AND (age_at_sampling < 40 OR age_at_sampling > 70)) OR NOT (diagnosis LIKE 'S72%' AND passage_number IS NOT NULL)".to_owned(),
            format!("SELECT COUNT(*) FROM samples WHERE diagnosis IN ({})", codes.join(", ")),
        ] {
            parse(&sql).unwrap_or_else(|r| panic!("{sql}: {r}"));
        }
    }

    #[test]
    fn deep_parentheses_are_refused_before_parsing() {
        let deep = |n: usize| {
            format!(
                "SELECT COUNT(*) FROM samples WHERE {}sex = 'Female'{}",
                "NOT (".repeat(n),
                ")".repeat(n)
            )
        };
        parse(&deep(LIMITS.max_nesting)).unwrap();
        let m = refused(&deep(LIMITS.max_nesting + 1));
        assert!(m.contains("nests parentheses 11 deep"), "{m}");
        // Parentheses inside quoted text do not count.
        let quoted = format!(
            "SELECT COUNT(*) FROM samples WHERE sex = '{}'",
            "(".repeat(50)
        );
        parse(&quoted).unwrap_or_else(|r| panic!("{quoted}: {r}"));
    }

    #[test]
    fn characters_outside_the_language_are_refused_before_parsing() {
        // Found by fuzzing (scripts/fuzz, target json): unclosed brackets
        // made the parser backtrack for seconds on 250 bytes.
        let brackets = format!(
            "SELECT T1~F2*G&R0MaCOUNT1~F2G.G{}",
            "[G.GGGGGGG.GGGGGG.R0MG".repeat(8)
        );
        let start = std::time::Instant::now();
        assert!(refused(&brackets).contains("the character '~'"));
        assert!(refused(&brackets.replace(['~', '&'], " ")).contains("the character '['"));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        for c in [
            '[', ']', '{', '}', '~', '^', '&', '|', '#', '@', '$', '?', ':', '/', '%', '\\',
        ] {
            let text = format!("SELECT COUNT(*) FROM samples WHERE age_at_sampling {c} 3");
            assert!(refused(&text).contains(&format!("{c:?}")), "{text}");
        }
        // Found by fuzzing (target sql): text the tokenizer reads as Oracle's
        // Q'…' and PostgreSQL's e'…' strings, where a scan for plain quotes
        // saw the nested SELECTs as quoted, kept the parser busy.
        let strings = format!(
            "SELECt se, Q'e'ae'#Az,   -  1 <SELECT UNs FROM (((({}",
            " FROM ((((SELECT\n   e'ae'#Az,   -  1FROM ((((".repeat(8)
        );
        let start = std::time::Instant::now();
        assert!(refused(&strings).contains("outside quotes is not part of the query language"));
        for text in [
            "SELECT COUNT(*) FROM samples WHERE sex = e'x'",
            "SELECT N'x'",
            "SELECT X'00'",
        ] {
            assert!(
                refused(text).contains("not part of the query language"),
                "{text}"
            );
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // Inside quotes and comments anything goes.
        parse(
            "-- don't [worry] ~ about ø...\nSELECT COUNT(*) FROM samples -- [x]'\n WHERE sex = 'x'",
        )
        .unwrap();
        assert!(refused("SELECT COUNT(*) -- note\nFROM samples WHERE a [ 3").contains("'['"));
        parse("SELECT COUNT(*) FROM samples WHERE diagnosis LIKE '[S72]~ø%'").unwrap();
        parse("SELECT COUNT(*) FROM samples WHERE age_at_sampling >= -3 AND sex <> 'x';").unwrap();
    }

    #[test]
    fn a_sign_after_not_is_refused_before_parsing() {
        // Found by fuzzing (scripts/fuzz, target json): 385 bytes of
        // "NOT+NOT+NOT" in parentheses kept the parser busy for 7 s.
        let chain = format!("SELECT {}(U", "NOT+".repeat(110));
        let nested = format!("SELECT U{}", "(NOT+NOT+NOT U".repeat(9));
        let start = std::time::Instant::now();
        for text in [
            chain.as_str(),
            nested.as_str(),
            "SELECT COUNT(*) FROM samples WHERE NOT -age_at_sampling > 3",
            "SELECT COUNT(*) FROM samples WHERE NOT\n  + 1 = 1",
            "SELECT COUNT(*) FROM samples WHERE sex = 'F' AND not-3 < age_at_sampling",
        ] {
            assert!(refused(text).contains("right after NOT"), "{text}");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // NOT where the language has it, and signs elsewhere, still parse.
        for text in [
            "SELECT COUNT(*) FROM samples WHERE NOT (sex = 'Female') AND age_at_sampling > -1",
            "SELECT COUNT(*) FROM samples WHERE diagnosis NOT LIKE 'S72%' AND sample_type NOT IN ('Serum')",
            "SELECT COUNT(*) FROM samples WHERE diagnosis IS NOT NULL AND age_at_sampling NOT BETWEEN -1 AND 40",
            "SELECT COUNT(*) FROM samples WHERE sex = 'NOT' AND age_at_sampling >= -3",
        ] {
            parse(text).unwrap_or_else(|r| panic!("{text}: {r}"));
        }
    }

    #[test]
    fn dots_outside_names_and_numbers_are_refused_before_parsing() {
        // Found by fuzzing (scripts/fuzz, target sql): dotted chains that
        // end in a dot kept the parser busy for minutes on 210 bytes.
        let chains = format!(
            "SELECT COUN.E.EES.EN.E.EESE_OUN {}.",
            "E.EaN.E.EN.E.EESE_.E.EES.EN.E.COCNT .EU.EES>EN".repeat(4)
        );
        let start = std::time::Instant::now();
        for text in [
            chains.as_str(),
            "SELECT COUNT(*) FROM samples WHERE samples.sex.x = 'Female'",
            "SELECT COUNT(*) FROM samples WHERE samples..sex = 'Female'",
            "SELECT COUNT(*) FROM samples WHERE samples. sex = 'Female'",
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling > 1.5.",
        ] {
            assert!(refused(text).contains("a dot outside quotes"), "{text}");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        parse("SELECT COUNT(*) FROM samples WHERE samples.sex = 'F.e.m.a.l.e.'").unwrap();
        parse("SELECT COUNT(*) FROM samples WHERE samples.age_at_sampling > 2").unwrap();
        // A decimal gets past the text check and is refused for what it is.
        let decimal = "SELECT COUNT(*) FROM samples WHERE age_at_sampling > 2.5";
        assert!(refused(decimal).contains("not a whole number"));
    }

    #[test]
    fn long_and_wide_questions_are_refused_with_the_limit_named() {
        let many = |n: usize, sep: &str| {
            (0..n)
                .map(|i| format!("age_at_sampling <> {i}"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        let text = format!("SELECT COUNT(*) FROM samples WHERE {}", many(65, " AND "));
        assert!(refused(&text).contains("65 conditions; at most 64"));
        let text = format!("SELECT COUNT(*) FROM samples WHERE {}", many(64, " AND "));
        parse(&text).unwrap();

        let values: Vec<String> = (0..257).map(|i| i.to_string()).collect();
        let text = format!(
            "SELECT COUNT(*) FROM samples WHERE age_at_sampling IN ({})",
            values.join(",")
        );
        assert!(refused(&text).contains("IN list has 257 values"));

        let text = format!(
            "SELECT COUNT(*) FROM samples WHERE {}",
            "NOT ".repeat(201) + "consent_research"
        );
        assert!(refused(&text).contains("201 AND, OR and NOT"));

        let text = format!("SELECT {} FROM samples", ["COUNT(*)"; 9].join(", "));
        assert!(refused(&text).contains("9 measures"));

        let text = format!(
            "SELECT COUNT(*) FROM samples WHERE sex = '{}'",
            "x".repeat(9000)
        );
        assert!(refused(&text).contains("bytes long"));
    }

    #[test]
    fn nesting_counts_alternations_not_list_length() {
        let leaf = || Filter::IsNull {
            column: "diagnosis".into(),
        };
        let and = |c: Vec<Filter>| Filter::And(c);
        assert_eq!(
            nesting(&and(vec![and(vec![leaf(), leaf()]), leaf()]), None),
            1
        );
        assert_eq!(
            nesting(
                &and(vec![Filter::Or(vec![
                    leaf(),
                    Filter::Not(Box::new(leaf()))
                ])]),
                None
            ),
            3
        );
        // A JSON query is held to the same limit as SQL.
        let mut deep = leaf();
        for _ in 0..11 {
            deep = Filter::Not(Box::new(deep));
        }
        let q = FeasibilityQuery {
            measures: vec![bonebank_schemas::Measure::Samples],
            filter: deep,
            group_by: Vec::new(),
        };
        assert!(check_query(&q).unwrap_err().message.contains("11 deep"));
    }
}
