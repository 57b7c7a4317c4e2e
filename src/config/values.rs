//! The bottom of the configuration's stages: a raw value with where it
//! came from ([`Sourced`]), and the problems found so far.

use super::Problem;

/// A raw value with the place it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Sourced<T = String> {
    pub value: T,
    /// The flag, variable or file key path, as error messages name it.
    pub origin: String,
    /// Whether the value came from the configuration file.
    pub in_file: bool,
}

pub(super) fn src(value: impl Into<String>, origin: impl Into<String>) -> Sourced {
    Sourced {
        value: value.into(),
        origin: origin.into(),
        in_file: false,
    }
}

/// The problems found so far, in the order found.
#[derive(Debug, Default)]
pub(super) struct Problems {
    list: Vec<Problem>,
    file: bool,
}

impl Problems {
    /// Records a problem. The same problem twice (the same bad value given
    /// twice in one source, e.g. in `ROLECALL_PROFILES`) is listed once.
    pub fn push(&mut self, origin: impl Into<String>, message: impl Into<String>) {
        let p = Problem {
            origin: origin.into(),
            message: message.into(),
        };
        if !self.list.contains(&p) {
            self.list.push(p);
        }
    }

    /// A problem with a sourced value.
    pub fn at(&mut self, s: &Sourced, message: impl Into<String>) {
        self.file |= s.in_file;
        self.push(&s.origin, message);
    }

    /// A problem with the configuration file itself.
    pub fn in_file(&mut self, origin: impl Into<String>, message: impl Into<String>) {
        self.file = true;
        self.push(origin, message);
    }

    /// Whether any problem is the file's (then its profiles are not "missing").
    pub fn touch_file(&self) -> bool {
        self.file
    }

    pub fn append(&mut self, other: Problems) {
        self.file |= other.file;
        for p in other.list {
            self.push(p.origin, p.message);
        }
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.list
    }

    /// Each problem as `origin: message`, as the error shows it.
    #[cfg(test)]
    pub fn lines(&self) -> Vec<String> {
        let line = |p: &Problem| format!("{}: {}", p.origin, p.message);
        self.list.iter().map(line).collect()
    }
}
