//! The site's year in one report, for the data-protection officer: the
//! privacy loss spent (catalogue releases, sample-bound measurements and
//! fresh questions, per project and in total, with the (ε, δ) it amounts
//! to), what came of the questions, who decided what, the dataset versions
//! served, and the audit chain's head hash. The same content as HTML and as
//! PDF (laid out here, written by `krilla` with an embedded subset of
//! DejaVu Sans), in English, German or Danish, with the words of the
//! stewards' pages.

use bonebank_schemas::wire::Accounting;
use bonebank_service::pages::word;
use krilla::Document;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::Metadata;
use krilla::page::PageSettings;
use krilla::paint::Stroke;
use krilla::text::{Font, TextDirection};

use crate::audit::{Broken, Intact};
use crate::store::report::{Spent, Year};
use crate::{Error, Result};

/// Everything the report says, gathered once for both formats.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub site: String,
    pub year: i32,
    pub accounting: Accounting,
    /// δ of the (ε, δ) under zCDP.
    pub delta: f64,
    /// What the year's total amounts to in (ε, δ) under zCDP; the total
    /// itself is ε under pure accounting.
    pub epsilon: Option<f64>,
    pub counted: Year,
    /// The whole chain's check at the time of the report.
    pub chain: Result<Intact, String>,
    /// When it was made, RFC 3339.
    pub made: String,
}

impl Facts {
    /// Gathers `year` from `store` under the site's `policy`.
    pub fn gather(
        store: &crate::store::Store,
        site: &str,
        policy: &bonebank_query::policy::Policy,
        year: i32,
    ) -> Result<Self> {
        if !(2000..=9999).contains(&year) {
            return Err(Error::BadRequest(format!(
                "year {year}: give a year such as 2026"
            )));
        }
        let counted = store.year(year, policy.accounting)?;
        let epsilon = match policy.accounting {
            Accounting::Zcdp if counted.total.units > 0 => Some(crate::privacy::zcdp_epsilon(
                counted.total.loss(),
                policy.zcdp.delta,
            )?),
            Accounting::Zcdp => Some(0.0),
            Accounting::Pure => Some(counted.total.loss()),
        };
        let chain = store.verify_audit()?.map_err(|b: Broken| b.to_string());
        Ok(Self {
            site: site.to_owned(),
            year,
            accounting: policy.accounting,
            delta: policy.zcdp.delta,
            epsilon,
            counted,
            chain,
            made: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }
}

/// A piece of the report.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    Title(String),
    Heading(String),
    Text(String),
    /// A line in a fixed-width face would be nicer; the hash is short
    /// enough to fit a line in the body face.
    Code(String),
    Table {
        head: Vec<String>,
        rows: Vec<Vec<String>>,
        /// The last row is a total (bold).
        total: bool,
    },
}

/// The report in `language` (`en`, `de` or `da`).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    language: String,
    title: String,
    blocks: Vec<Block>,
}

impl Report {
    pub fn new(facts: &Facts, language: &str) -> Self {
        let lang = match language {
            "de" | "da" => language,
            _ => "en",
        };
        let w = |key: &str, values: &[(&str, &str)]| word(lang, &format!("report.{key}"), values);
        let year = facts.year.to_string();
        let site = facts.site.as_str();
        let sym = match facts.accounting {
            Accounting::Zcdp => "ρ",
            Accounting::Pure => "ε",
        };
        let loss = |s: &Spent| decimal(lang, s.loss(), 3);
        let count = |n: i64| whole(lang, n);
        let c = &facts.counted;
        let title = w("title", &[("year", &year), ("site", site)]);
        let mut blocks = vec![
            Block::Title(title.clone()),
            Block::Text(w(
                "intro",
                &[("year", &year), ("site", site), ("date", &facts.made[..10])],
            )),
            Block::Heading(w("loss", &[])),
            Block::Text(w("loss_help", &[("sym", sym)])),
        ];
        let mut rows = vec![
            vec![
                w("catalogue", &[]),
                count(c.catalogue.releases),
                loss(&c.catalogue),
            ],
            vec![w("bounds", &[]), count(c.bounds.releases), loss(&c.bounds)],
        ];
        for (project, spent) in &c.projects {
            rows.push(vec![
                w("project", &[("project", project)]),
                count(spent.releases),
                loss(spent),
            ]);
        }
        rows.push(vec![
            w("total", &[]),
            count(c.total.releases),
            loss(&c.total),
        ]);
        blocks.push(Block::Table {
            head: vec![
                w("col_what", &[]),
                w("col_releases", &[]),
                w("col_loss", &[("sym", sym)]),
            ],
            rows,
            total: true,
        });
        blocks.push(Block::Text(match (facts.accounting, facts.epsilon) {
            (Accounting::Zcdp, Some(epsilon)) => w(
                "amounts_zcdp",
                &[
                    ("sym", sym),
                    ("loss", &loss(&c.total)),
                    ("epsilon", &decimal(lang, epsilon, 2)),
                    ("delta", &power_of_ten(facts.delta)),
                ],
            ),
            _ => w("amounts_pure", &[("loss", &loss(&c.total))]),
        }));
        let q = &c.questions;
        blocks.push(Block::Heading(w("questions", &[])));
        blocks.push(Block::Table {
            head: vec![w("col_what", &[]), w("col_count", &[])],
            rows: vec![
                vec![w("q_released", &[]), count(q.released)],
                vec![w("q_remembered", &[]), count(q.remembered)],
                vec![w("q_held", &[]), count(q.held)],
                vec![w("q_refused", &[]), count(q.refused)],
                vec![w("q_failed", &[]), count(q.failed)],
            ],
            total: false,
        });
        blocks.push(Block::Heading(w("decisions", &[])));
        if c.decisions.is_empty() {
            blocks.push(Block::Text(w("no_decisions", &[])));
        } else {
            blocks.push(Block::Table {
                head: vec![
                    w("col_steward", &[]),
                    w("col_approved", &[]),
                    w("col_first", &[]),
                    w("col_rejected", &[]),
                ],
                rows: c
                    .decisions
                    .iter()
                    .map(|d| {
                        vec![
                            d.steward.clone(),
                            count(d.approved),
                            count(d.first_approvals),
                            count(d.rejected),
                        ]
                    })
                    .collect(),
                total: false,
            });
        }
        blocks.push(Block::Heading(w("versions", &[])));
        if c.versions.is_empty() {
            blocks.push(Block::Text(w("no_versions", &[])));
        } else {
            blocks.push(Block::Table {
                head: vec![
                    w("col_version", &[]),
                    w("col_served", &[]),
                    w("col_catalogue", &[]),
                ],
                rows: c
                    .versions
                    .iter()
                    .map(|v| {
                        let served = if v.served.is_empty() {
                            w("before_year", &[("year", &year)])
                        } else {
                            v.served.clone()
                        };
                        let catalogue = match &v.catalogue {
                            Some((day, charged)) => {
                                format!("{day} ({sym} {})", decimal(lang, *charged, 3))
                            }
                            None => w("no_catalogue", &[]),
                        };
                        vec![v.version.clone(), served, catalogue]
                    })
                    .collect(),
                total: false,
            });
        }
        blocks.push(Block::Heading(w("audit", &[])));
        match &facts.chain {
            Ok(intact) => {
                blocks.push(Block::Text(w(
                    "audit_intact",
                    &[
                        ("entries", &count(c.audit_entries)),
                        ("year", &year),
                        ("all", &count(intact.entries)),
                    ],
                )));
                blocks.push(Block::Code(intact.head.clone()));
                blocks.push(Block::Text(w("audit_note", &[])));
            }
            Err(why) => blocks.push(Block::Text(w("audit_broken", &[("why", why)]))),
        }
        Self {
            language: lang.to_owned(),
            title,
            blocks,
        }
    }

    /// A file name for the report of `site` and `year`, without extension.
    pub fn file_stem(facts: &Facts) -> String {
        format!("privacy-report-{}-{}", facts.site, facts.year)
    }

    /// The report as one HTML page (its style inline: the page stands alone
    /// when saved or mailed).
    pub fn html(&self) -> String {
        use bonebank_service::escape_html as e;
        let mut body = String::new();
        for b in &self.blocks {
            match b {
                Block::Title(t) => body.push_str(&format!("<h1>{}</h1>\n", e(t))),
                Block::Heading(t) => body.push_str(&format!("<h2>{}</h2>\n", e(t))),
                Block::Text(t) => body.push_str(&format!("<p>{}</p>\n", e(t))),
                Block::Code(t) => body.push_str(&format!("<p><code>{}</code></p>\n", e(t))),
                Block::Table { head, rows, total } => {
                    body.push_str("<table>\n<thead><tr>");
                    for (i, h) in head.iter().enumerate() {
                        let class = if i > 0 { " class=\"n\"" } else { "" };
                        body.push_str(&format!("<th scope=\"col\"{class}>{}</th>", e(h)));
                    }
                    body.push_str("</tr></thead>\n<tbody>\n");
                    for (r, row) in rows.iter().enumerate() {
                        let last = *total && r + 1 == rows.len();
                        body.push_str(if last { "<tr class=\"total\">" } else { "<tr>" });
                        for (i, cell) in row.iter().enumerate() {
                            if i == 0 {
                                body.push_str(&format!("<th scope=\"row\">{}</th>", e(cell)));
                            } else {
                                body.push_str(&format!("<td class=\"n\">{}</td>", e(cell)));
                            }
                        }
                        body.push_str("</tr>\n");
                    }
                    body.push_str("</tbody>\n</table>\n");
                }
            }
        }
        format!(
            "<!doctype html>\n<html lang=\"{}\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
            self.language,
            e(&self.title)
        )
    }

    /// The report as PDF (A4).
    pub fn pdf(&self) -> Result<Vec<u8>> {
        let fonts = Fonts::load()?;
        let pages = layout(&self.blocks, &fonts);
        let mut document = Document::new();
        document.set_metadata(
            Metadata::new()
                .title(self.title.clone())
                .language(self.language.clone())
                .creator("bonebank".into()),
        );
        for ops in pages {
            let settings = PageSettings::from_wh(PAGE.0, PAGE.1).expect("A4 is a size");
            let mut page = document.start_page_with(settings);
            let mut surface = page.surface();
            for op in ops {
                match op {
                    Op::Text {
                        x,
                        y,
                        bold,
                        size,
                        text,
                    } => {
                        let font = if bold { &fonts.bold } else { &fonts.regular };
                        surface.draw_text(
                            Point::from_xy(x, y),
                            font.font.clone(),
                            size,
                            &text,
                            false,
                            TextDirection::Auto,
                        );
                    }
                    Op::Rule { x1, x2, y } => {
                        let mut path = PathBuilder::new();
                        path.move_to(x1, y);
                        path.line_to(x2, y);
                        if let Some(path) = path.finish() {
                            surface.set_fill(None);
                            surface.set_stroke(Some(Stroke {
                                width: 0.6,
                                ..Stroke::default()
                            }));
                            surface.draw_path(&path);
                            surface.set_stroke(None);
                        }
                    }
                }
            }
            surface.finish();
            page.finish();
        }
        document
            .finish()
            .map_err(|e| Error::Engine(format!("writing the PDF: {e:?}")))
    }
}

const STYLE: &str = "body{font-family:'DejaVu Sans',system-ui,sans-serif;color:#1a1a1a;max-width:48rem;margin:2rem auto;padding:0 1rem;line-height:1.45}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:1.6rem}\
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{padding:.25rem .7rem;border-bottom:1px solid #999;text-align:left}\
.n{text-align:right}thead th{border-bottom:2px solid #1a1a1a}tr.total th,tr.total td{font-weight:bold;border-top:2px solid #1a1a1a}\
code{word-break:break-all;font-size:.9rem}";

/// The Content-Security-Policy the served HTML report needs: nothing but
/// its own inline style, by hash.
pub fn html_policy() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// Writes `bytes` to `path` whole or not at all (a hidden file beside it,
/// then renamed), so that an interrupted run leaves no half report.
pub fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("report");
    let part = path.with_file_name(format!(".{name}.part"));
    std::fs::write(&part, bytes).map_err(Error::io(&part))?;
    std::fs::rename(&part, path).map_err(Error::io(path))
}

/// A number with `places` decimals as the language writes it, trailing
/// zeros dropped: 0.5, 0,5.
fn decimal(lang: &str, x: f64, places: usize) -> String {
    let s = format!("{x:.places$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    if lang == "en" { s } else { s.replace('.', ",") }
}

/// A count with the language's thousands separator: 1,234 or 1.234.
fn whole(lang: &str, n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let sep = if lang == "en" { ',' } else { '.' };
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(d);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// δ as a power of ten where it is one (10⁻⁶), else in decimals.
fn power_of_ten(delta: f64) -> String {
    let exponent = delta.log10().round();
    if (10f64.powf(exponent) - delta).abs() <= delta * 1e-9 {
        let sup: String = format!("{}", exponent as i64)
            .chars()
            .map(|c| match c {
                '-' => '⁻',
                d => ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'][d as usize - '0' as usize],
            })
            .collect();
        format!("10{sup}")
    } else {
        format!("{delta}")
    }
}

/// A4 in points.
const PAGE: (f32, f32) = (595.0, 842.0);
const MARGIN: f32 = 56.0;
const BODY: f32 = 10.0;

/// A face: krilla's font to draw with, and its metrics to lay out.
struct Face {
    font: Font,
    metrics: ttf_parser::Face<'static>,
}

impl Face {
    fn new(data: &'static [u8]) -> Result<Self> {
        let unloadable = || Error::Engine("the report's font does not load".into());
        let font = Font::new(data.into(), 0).ok_or_else(unloadable)?;
        let metrics = ttf_parser::Face::parse(data, 0).map_err(|_| unloadable())?;
        Ok(Self { font, metrics })
    }

    /// The width of `text` at `size`, in points.
    fn width(&self, text: &str, size: f32) -> f32 {
        let face = &self.metrics;
        let units: u32 = text
            .chars()
            .map(|c| {
                face.glyph_index(c)
                    .and_then(|g| face.glyph_hor_advance(g))
                    .map_or(0, u32::from)
            })
            .sum();
        units as f32 * size / f32::from(face.units_per_em())
    }
}

struct Fonts {
    regular: Face,
    bold: Face,
}

impl Fonts {
    fn load() -> Result<Self> {
        Ok(Self {
            regular: Face::new(include_bytes!("../assets/fonts/DejaVuSans.ttf"))?,
            bold: Face::new(include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf"))?,
        })
    }
}

/// Something to draw on a page; `y` is the baseline, from the top.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Text {
        x: f32,
        y: f32,
        bold: bool,
        size: f32,
        text: String,
    },
    Rule {
        x1: f32,
        x2: f32,
        y: f32,
    },
}

/// Lays the blocks out on A4 pages, top to bottom, wrapping text at the
/// margins and starting a page where the next line would not fit.
fn layout(blocks: &[Block], fonts: &Fonts) -> Vec<Vec<Op>> {
    let width = PAGE.0 - 2.0 * MARGIN;
    let mut pages: Vec<Vec<Op>> = vec![Vec::new()];
    let mut y = MARGIN;
    let room = |y: &mut f32, pages: &mut Vec<Vec<Op>>, needed: f32| {
        if *y + needed > PAGE.1 - MARGIN {
            pages.push(Vec::new());
            *y = MARGIN;
        }
    };
    let text =
        |pages: &mut Vec<Vec<Op>>, y: &mut f32, s: &str, size: f32, bold: bool, x: f32, w: f32| {
            let face = if bold { &fonts.bold } else { &fonts.regular };
            for line in wrap(face, s, size, w) {
                room(y, pages, size * 1.45);
                *y += size * 1.45;
                pages.last_mut().expect("a page").push(Op::Text {
                    x,
                    y: *y,
                    bold,
                    size,
                    text: line,
                });
            }
        };
    for b in blocks {
        match b {
            Block::Title(t) => text(&mut pages, &mut y, t, 17.0, true, MARGIN, width),
            Block::Heading(t) => {
                y += 10.0;
                text(&mut pages, &mut y, t, 12.5, true, MARGIN, width);
                y += 2.0;
            }
            Block::Text(t) | Block::Code(t) => {
                text(&mut pages, &mut y, t, BODY, false, MARGIN, width);
                y += 4.0;
            }
            Block::Table { head, rows, total } => {
                // Numbers right-aligned in columns as wide as their widest
                // cell; the first column takes what is left.
                let gap = 14.0;
                let mut widths: Vec<f32> = (1..head.len())
                    .map(|i| {
                        rows.iter()
                            .map(|r| fonts.bold.width(&r[i], BODY))
                            .chain([fonts.bold.width(&head[i], BODY)])
                            .fold(0.0, f32::max)
                            .min(width / 3.0)
                    })
                    .collect();
                let first = (width - widths.iter().sum::<f32>() - gap * widths.len() as f32)
                    .max(width / 3.0);
                widths.insert(0, first);
                let row = |pages: &mut Vec<Vec<Op>>, y: &mut f32, cells: &[String], bold: bool| {
                    let face = if bold { &fonts.bold } else { &fonts.regular };
                    let lines: Vec<Vec<String>> = cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| wrap(face, c, BODY, *w))
                        .collect();
                    let height = lines.iter().map(Vec::len).max().unwrap_or(1) as f32 * BODY * 1.45;
                    room(y, pages, height + 4.0);
                    let mut x = MARGIN;
                    for (i, (cell, w)) in lines.iter().zip(&widths).enumerate() {
                        for (n, line) in cell.iter().enumerate() {
                            let right = if i > 0 {
                                w - face.width(line, BODY)
                            } else {
                                0.0
                            };
                            pages.last_mut().expect("a page").push(Op::Text {
                                x: x + right,
                                y: *y + (n + 1) as f32 * BODY * 1.45,
                                bold,
                                size: BODY,
                                text: line.clone(),
                            });
                        }
                        x += w + gap;
                    }
                    *y += height + 4.0;
                };
                row(&mut pages, &mut y, head, true);
                pages.last_mut().expect("a page").push(Op::Rule {
                    x1: MARGIN,
                    x2: PAGE.0 - MARGIN,
                    y: y - 1.0,
                });
                for (r, cells) in rows.iter().enumerate() {
                    let last = *total && r + 1 == rows.len();
                    if last {
                        pages.last_mut().expect("a page").push(Op::Rule {
                            x1: MARGIN,
                            x2: PAGE.0 - MARGIN,
                            y: y + 2.0,
                        });
                        y += 2.0;
                    }
                    row(&mut pages, &mut y, cells, last);
                }
                y += 6.0;
            }
        }
    }
    pages
}

/// `text` broken at spaces into lines no wider than `width` (a word wider
/// than the line is broken where it must be).
fn wrap(face: &Face, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if face.width(&candidate, size) <= width
            || line.is_empty() && face.width(word, size) <= width
        {
            line = candidate;
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        // A word too long for a line on its own, by characters.
        let mut part = String::new();
        for c in word.chars() {
            part.push(c);
            if face.width(&part, size) > width {
                part.pop();
                lines.push(std::mem::take(&mut part));
                part.push(c);
            }
        }
        line = part;
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_that_is_not_one_is_refused_and_an_empty_year_reports_nothing_spent() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("state.sqlite")).unwrap();
        let policy = bonebank_query::policy::Policy::default();
        for year in [0, 1999, 10_000] {
            let e = Facts::gather(&store, "DE-LUE", &policy, year).unwrap_err();
            assert!(matches!(e, Error::BadRequest(_)), "{year}: {e}");
        }
        let facts = Facts::gather(&store, "DE-LUE", &policy, 2026).unwrap();
        assert_eq!(facts.counted.total.units, 0);
        assert_eq!(facts.epsilon, Some(0.0));
        let html = Report::new(&facts, "da").html();
        assert!(
            html.contains("<html lang=\"da\">") && html.contains("Privatlivsrapport 2026: DE-LUE")
        );
        assert!(
            Report::new(&facts, "fr")
                .html()
                .contains("<html lang=\"en\">")
        );
    }

    #[test]
    fn numbers_are_written_as_each_language_writes_them() {
        assert_eq!(decimal("en", 1.25, 3), "1.25");
        assert_eq!(decimal("de", 1.25, 3), "1,25");
        assert_eq!(decimal("da", 2.0, 3), "2");
        assert_eq!(whole("en", 1_234_567), "1,234,567");
        assert_eq!(whole("de", 1_234), "1.234");
        assert_eq!(whole("da", 999), "999");
        assert_eq!(power_of_ten(1e-6), "10⁻⁶");
        assert_eq!(power_of_ten(2e-6), "0.000002");
    }

    #[test]
    fn text_wraps_within_the_width_and_keeps_every_word() {
        let fonts = Fonts::load().unwrap();
        let text = "what left the site this year, at what privacy loss, and who decided which questions ran";
        let lines = wrap(&fonts.regular, text, BODY, 120.0);
        assert!(lines.len() > 2, "{lines:?}");
        for l in &lines {
            assert!(fonts.regular.width(l, BODY) <= 120.0, "{l}");
        }
        assert_eq!(lines.join(" "), text);
        // A 64-character hash in a narrow column is cut, not lost.
        let hash = "5f1c".repeat(16);
        let lines = wrap(&fonts.regular, &hash, BODY, 100.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), hash);
    }
}
