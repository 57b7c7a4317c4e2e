//! The results table: one line per figure, the details under it.

/// One line of the results table.
pub(crate) struct Line {
    pub(crate) row: &'static str,
    pub(crate) what: String,
    pub(crate) figure: String,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
}

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) lines: Vec<Line>,
    /// Detail sections printed after the table (markdown).
    pub(crate) details: Vec<String>,
}

impl Report {
    pub(crate) fn line(
        &mut self,
        row: &'static str,
        what: impl Into<String>,
        figure: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) {
        let line = Line {
            row,
            what: what.into(),
            figure: figure.into(),
            target: target.into(),
            met,
        };
        eprintln!(
            "   {}: {} — {} (target {}; {})",
            line.row,
            line.what,
            line.figure,
            line.target,
            met_text(line.met)
        );
        self.lines.push(line);
    }
}

pub(crate) fn met_text(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**NO**",
        None => "—",
    }
}
