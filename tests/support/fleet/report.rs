//! The fleet's results: a markdown table per scenario in
//! `target/fleet/results.md`, spliced into docs/SCALE.md on request.

use std::path::PathBuf;

pub const BEGIN: &str = "<!-- fleet:begin -->";
pub const END: &str = "<!-- fleet:end -->";

/// One scenario's figures, with the command that reproduces them.
#[derive(Clone, Debug, Default)]
pub struct Section {
    pub title: String,
    pub command: String,
    pub rows: Vec<(String, String)>,
}

impl Section {
    pub fn new(title: impl Into<String>, command: impl Into<String>) -> Section {
        Section {
            title: title.into(),
            command: command.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, figure: impl Into<String>, value: impl Into<String>) {
        self.rows.push((figure.into(), value.into()));
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### {}\n\n`{}`\n\n| figure | value |\n|---|---|\n",
            self.title, self.command
        );
        for (k, v) in &self.rows {
            s.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
        }
        s
    }
}

/// `target/fleet` (next to Cargo's `tmp`), created if missing.
pub fn results_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|t| t.join("fleet"))
        .unwrap_or_else(|| PathBuf::from("target/fleet"));
    std::fs::create_dir_all(&dir).expect("create target/fleet");
    dir
}

/// `doc` with the text between [`BEGIN`] and [`END`] replaced by `block`
/// (the markers kept); `None` if the markers are missing or out of order.
pub fn splice(doc: &str, block: &str) -> Option<String> {
    let b = doc.find(BEGIN)? + BEGIN.len();
    let e = b + doc[b..].find(END)?;
    Some(format!("{}\n{}\n{}", &doc[..b], block.trim(), &doc[e..]))
}

/// Records `section` as scenario `key` (`target/fleet/scenario-KEY.md`,
/// replacing that scenario's last figures and keeping the others), then
/// writes `target/fleet/results.md` from every scenario recorded, in key
/// order; with `ROLECALL_FLEET_WRITE_DOCS=1`, also splices the same text
/// into docs/SCALE.md (created with a title and the markers if missing).
/// Returns the files written.
pub fn write_results(machine: &str, key: &str, section: &Section) -> Vec<PathBuf> {
    let dir = results_dir();
    std::fs::write(
        dir.join(format!("scenario-{key}.md")),
        format!(
            "{}
Measured on {machine}.
",
            section.markdown()
        ),
    )
    .expect("write the scenario's figures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read target/fleet")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("scenario-") && n.ends_with(".md"))
        })
        .collect();
    files.sort();
    let text = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let results = dir.join("results.md");
    std::fs::write(&results, format!("# Fleet results\n\n{text}")).expect("write results.md");
    let mut written = vec![results];
    if std::env::var("ROLECALL_FLEET_WRITE_DOCS").as_deref() == Ok("1") {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/SCALE.md");
        let doc = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| format!("# Scale\n\n{BEGIN}\n{END}\n"));
        let new = splice(&doc, &text).unwrap_or_else(|| {
            panic!(
                "{} has no {BEGIN} ... {END} markers: add them where the measured figures go",
                path.display()
            )
        });
        std::fs::write(&path, new).expect("write docs/SCALE.md");
        written.push(path);
    }
    written
}
