//! Progress bars for long work. They draw on standard error only when it is a
//! terminal, so logs and CI output stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over bytes of a file.
pub fn bytes(total: u64, label: &str) -> ProgressBar {
    styled(
        total,
        label,
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
    )
}

/// A bar over rows or other counted items.
pub fn rows(total: u64, label: &str) -> ProgressBar {
    styled(
        total,
        label,
        "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec}, {eta} left",
    )
}

fn styled(total: u64, label: &str, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .expect("template is valid")
        .progress_chars("=> ");
    ProgressBar::new(total)
        .with_style(style)
        .with_message(label.to_owned())
}
