//! `rolecall inject` and `rolecall uninject`: files, directories and stdin
//! in (each read with a cap, each YAML stream measured before it is
//! parsed), YAML documents out, a report line per object.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::fsread::{Follow, ReadError, read};
use crate::sys::yaml::{Shape, measure};

/// The largest input file (and stdin) read.
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
/// The deepest nesting of an input document (a pod spec nests about 12
/// levels; custom resources' schemas more).
const MAX_DEPTH: usize = 128;
/// The most values an input may build, aliases expanded.
const MAX_NODES: u64 = 4_000_000;

/// Exit codes of the two commands.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 64;
pub const EXIT_UNREADABLE: u8 = 66;

/// What the command prints and how it exits.
#[derive(Debug)]
pub struct Run {
    /// The documents, YAML, separated by `---`; empty unless the exit is 0.
    pub stdout: String,
    /// The report (exit 0) or the problems, one line each.
    pub stderr: Vec<String>,
    pub code: u8,
}

impl Run {
    /// Says the run: stderr's lines (problems prefixed `rolecall: ` when
    /// `prefix_problems` and the exit is not 0), then stdout; the exit code
    /// (1 when stdout cannot be written).
    pub fn emit(&self, prefix_problems: bool) -> u8 {
        use std::io::Write;
        let prefix = if prefix_problems && self.code != EXIT_OK {
            "rolecall: "
        } else {
            ""
        };
        let mut err = std::io::stderr().lock();
        for line in &self.stderr {
            let _ = writeln!(err, "{prefix}{line}");
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(self.stdout.as_bytes()) {
            Ok(()) => self.code,
            Err(_) => 1,
        }
    }
}

/// Which command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Inject,
    Uninject,
}

/// Runs `action` over the inputs (`-` is stdin; none means stdin).
pub fn run(action: Action, inputs: &[PathBuf], opts: &super::Options) -> Run {
    let stdin = [PathBuf::from("-")];
    let inputs = if inputs.is_empty() {
        &stdin[..]
    } else {
        inputs
    };
    let mut texts = Vec::new();
    for input in inputs {
        match read_input(input) {
            Ok(mut t) => texts.append(&mut t),
            Err(why) => return failed(EXIT_UNREADABLE, vec![why]),
        }
    }
    let mut out = Vec::new();
    let mut report = Vec::new();
    let mut problems = Vec::new();
    for (name, bytes) in &texts {
        let docs = match documents(bytes) {
            Ok(docs) => docs,
            Err(why) => {
                problems.push(format!("{name}: {why}"));
                continue;
            }
        };
        for doc in docs {
            let done = match action {
                Action::Inject => super::inject(&doc, opts),
                Action::Uninject => super::uninject(&doc),
            };
            match done {
                Ok(o) => {
                    out.push(o.value);
                    report.extend(o.report);
                }
                Err(ps) => problems.extend(ps.into_iter().map(|p| format!("{name}: {p}"))),
            }
        }
    }
    if !problems.is_empty() {
        return failed(EXIT_INVALID, problems);
    }
    match render(&out) {
        Ok(stdout) => Run {
            stdout,
            stderr: report,
            code: EXIT_OK,
        },
        Err(why) => failed(EXIT_INVALID, vec![why]),
    }
}

fn failed(code: u8, stderr: Vec<String>) -> Run {
    Run {
        stdout: String::new(),
        stderr,
        code,
    }
}

/// The texts of one input: stdin, a file, or a directory's `*.yaml`,
/// `*.yml` and `*.json` files (sorted, not recursive), each with its name.
fn read_input(input: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    if input == Path::new("-") {
        return Ok(vec![("stdin".into(), read_stdin()?)]);
    }
    if input.is_dir() {
        let entries = std::fs::read_dir(input)
            .map_err(|e| format!("cannot read directory {}: {e}", input.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let ext = p.extension().and_then(|e| e.to_str());
                matches!(ext, Some("yaml" | "yml" | "json")) && !p.is_dir()
            })
            .collect();
        files.sort();
        return files.iter().map(|f| read_file(f)).collect();
    }
    Ok(vec![read_file(input)?])
}

/// Stdin, at most [`MAX_INPUT_BYTES`].
pub fn read_stdin() -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let stdin = std::io::stdin().lock();
    stdin
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!("stdin is larger than {MAX_INPUT_BYTES} bytes"));
    }
    Ok(bytes)
}

fn read_file(path: &Path) -> Result<(String, Vec<u8>), String> {
    let name = path.display().to_string();
    match read(path, MAX_INPUT_BYTES, Follow::Yes) {
        Ok(bytes) => Ok((name, bytes)),
        Err(e @ ReadError::TooLarge { .. }) => Err(format!("input file {name} {e}")),
        Err(e) => Err(format!("input file {name} {e}")),
    }
}

/// The documents of a YAML stream (JSON is YAML), empty ones dropped;
/// measured first, so that no stream of aliases or deep brackets is built.
pub fn documents(bytes: &[u8]) -> Result<Vec<Value>, String> {
    match measure(bytes, MAX_DEPTH, MAX_NODES) {
        Some(Shape::Fits) => {}
        Some(Shape::TooDeep) => {
            return Err(format!(
                "nests deeper than {MAX_DEPTH} levels; refused before parsing"
            ));
        }
        Some(Shape::TooMany) => {
            return Err(format!(
                "holds more than {MAX_NODES} values (aliases expanded); refused before parsing"
            ));
        }
        None => return Err("the YAML parser could not start (out of memory)".into()),
    }
    let mut docs = Vec::new();
    // JSON (`kubectl get -o json`) by its own parser: YAML refuses the tabs
    // JSON may be indented with. Its values hold no aliases, and its
    // parser stops at 128 levels.
    if bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['))
    {
        for doc in serde_json::Deserializer::from_slice(bytes).into_iter::<Value>() {
            match doc {
                Ok(Value::Null) => {}
                Ok(v) => docs.push(v),
                Err(e) => return Err(format!("not valid JSON: {e}")),
            }
        }
        return Ok(docs);
    }
    for doc in serde_yaml_ng::Deserializer::from_slice(bytes) {
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(v) => docs.push(v),
            Err(e) => return Err(format!("not valid YAML: {e}")),
        }
    }
    Ok(docs)
}

/// The documents as YAML, separated by `---`.
pub fn render(docs: &[Value]) -> Result<String, String> {
    let mut out = Vec::new();
    for d in docs {
        out.push(serde_yaml_ng::to_string(d).map_err(|e| format!("cannot write YAML: {e}"))?);
    }
    Ok(out.join("---\n"))
}
