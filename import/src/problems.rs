//! What is wrong with an input: each problem names the file, row, column, the
//! value and what is allowed. The first few are kept in full, the rest counted.

use std::fmt;

/// How many problems are kept in full; the rest are only counted.
pub const SHOWN: usize = 20;

/// One thing wrong with an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The input file, or a description like "current samples table".
    pub file: String,
    /// Data row, counted from 1, not counting the header.
    pub row: Option<u64>,
    pub column: Option<String>,
    /// The offending value, cut to a readable length.
    pub value: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
}

/// The problems found in one import, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    shown: Vec<Problem>,
    total: u64,
}

impl Problems {
    /// Counts a problem; builds it only if it will be shown.
    pub fn add(&mut self, problem: impl FnOnce() -> Problem) {
        self.total += 1;
        if self.shown.len() < SHOWN {
            self.shown.push(problem());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The same problems, each told another way (the count stays).
    pub fn map(self, f: impl FnMut(Problem) -> Problem) -> Self {
        Self {
            shown: self.shown.into_iter().map(f).collect(),
            total: self.total,
        }
    }

    /// The problems kept in full.
    pub fn shown(&self) -> &[Problem] {
        &self.shown
    }
}

/// Cuts a value for display so a runaway field cannot flood the terminal.
pub fn excerpt(value: &str) -> String {
    cut(value, 60)
}

/// A file name or other outside text as messages show it: control
/// characters escaped, at most 300 characters.
pub fn printable(text: &str) -> String {
    cut(text, 300)
}

/// `value` cut to `max` characters, with control characters written as
/// escapes (`\0`, `\n`, `\u{1b}`), so that a message shows what is there
/// and a terminal runs nothing of it.
fn cut(value: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in value.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", printable(&self.file))?;
        if let Some(row) = self.row {
            write!(f, ", row {row}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ", column {}", cut(column, 60))?;
        }
        if let Some(value) = &self.value {
            write!(f, ", value '{value}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.total == 1 {
            "problem"
        } else {
            "problems"
        };
        writeln!(
            f,
            "import refused: {} {noun} found; nothing was changed.",
            self.total
        )?;
        // Found column by column; shown in file and row order.
        let mut shown: Vec<&Problem> = self.shown.iter().collect();
        shown.sort_by(|a, b| (&a.file, a.row).cmp(&(&b.file, b.row)));
        for p in shown {
            writeln!(f, "  {p}")?;
        }
        if self.total > self.shown.len() as u64 {
            writeln!(
                f,
                "  … and {} more (the first {SHOWN} are shown).",
                self.total - self.shown.len() as u64
            )?;
        }
        write!(
            f,
            "Row numbers count data rows from 1, not counting the header."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_twenty_and_counts_all() {
        let mut p = Problems::default();
        let mut built = 0;
        for row in 1..=25 {
            p.add(|| {
                built += 1;
                Problem {
                    file: "samples.csv".into(),
                    row: Some(row),
                    column: Some("sex".into()),
                    value: Some("F".into()),
                    message: "not a sex code".into(),
                }
            });
        }
        assert_eq!((p.total(), p.shown().len(), built), (25, SHOWN, SHOWN));
        let text = p.to_string();
        assert!(text.starts_with("import refused: 25 problems found; nothing was changed."));
        assert!(text.contains("samples.csv, row 1, column sex, value 'F': not a sex code"));
        assert!(text.contains("… and 5 more"));
    }

    #[test]
    fn messages_show_control_characters_as_escapes_and_cut_long_names() {
        let p = Problem {
            file: "ex\u{1b}[31mport.csv".into(),
            row: Some(2),
            column: Some("c".repeat(10_000)),
            value: Some(excerpt("a\0b\nc")),
            message: "bad".into(),
        };
        let shown = p.to_string();
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(shown.contains("ex\\u{1b}[31mport.csv"), "{shown}");
        assert!(shown.contains("'a\\0b\\nc'"), "{shown}");
        assert!(shown.len() < 200, "{} bytes", shown.len());
    }

    #[test]
    fn excerpt_cuts_long_values_on_char_boundaries() {
        let long = "ø".repeat(100);
        assert_eq!(excerpt(&long).chars().count(), 61);
        assert_eq!(excerpt("short"), "short");
    }
}
