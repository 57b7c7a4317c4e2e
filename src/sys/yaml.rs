//! The YAML parser's event stream (libyaml, through `unsafe-libyaml`, the
//! parser serde_yaml_ng runs), one event at a time, and [`measure`], the
//! parser's depth and size limits that the configuration relies on, walked
//! on the events before serde_yaml_ng loads a file. serde_yaml_ng keeps its
//! parser private and reads a document whole before it looks at it; walking
//! the events lets the check stop at the first level or value too many.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_ly;

/// One parser event, as the measure needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A sequence or a mapping starts, with its anchor (`&name`).
    Open { anchor: Option<Vec<u8>> },
    /// The innermost open sequence or mapping ends.
    Close,
    /// A scalar, with its anchor.
    Scalar { anchor: Option<Vec<u8>> },
    /// An alias (`*name`).
    Alias(Vec<u8>),
}

/// The events of `input`'s documents, in order; the iteration ends at the
/// end of the stream or at the first syntax error (`Err(())`, once; the
/// error itself is serde_yaml_ng's to report when it parses the file).
pub struct Events<'a> {
    /// Boxed: libyaml's parser must not move once initialised.
    parser: Box<MaybeUninit<unsafe_ly::yaml_parser_t>>,
    done: bool,
    /// libyaml reads `input` until the parser is deleted.
    input: PhantomData<&'a [u8]>,
}

impl<'a> Events<'a> {
    /// `None` when libyaml cannot allocate its parser.
    pub fn new(input: &'a [u8]) -> Option<Events<'a>> {
        let mut parser = Box::new(MaybeUninit::<unsafe_ly::yaml_parser_t>::uninit());
        let p = parser.as_mut_ptr();
        // SAFETY: `p` points to writable memory the size of a parser, which
        // yaml_parser_initialize fills in; on failure it frees what it took.
        if unsafe { unsafe_ly::yaml_parser_initialize(p) }.fail {
            return None;
        }
        // SAFETY: the parser is initialised; `input` outlives it (the
        // lifetime 'a ties the two); libyaml only reads it.
        unsafe {
            unsafe_ly::yaml_parser_set_encoding(p, unsafe_ly::YAML_UTF8_ENCODING);
            unsafe_ly::yaml_parser_set_input_string(p, input.as_ptr(), input.len() as u64);
        }
        Some(Events {
            parser,
            done: false,
            input: PhantomData,
        })
    }
}

/// The anchor at `ptr` (a NUL-terminated string libyaml owns), if any.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string.
unsafe fn anchor(ptr: *const u8) -> Option<Vec<u8>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: as the caller promises.
    Some(unsafe { CStr::from_ptr(ptr.cast()) }.to_bytes().to_vec())
}

impl Iterator for Events<'_> {
    type Item = Result<Event, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let p = self.parser.as_mut_ptr();
        while !self.done {
            let mut event = MaybeUninit::<unsafe_ly::yaml_event_t>::uninit();
            let e = event.as_mut_ptr();
            // SAFETY: the parser is initialised and has not failed (`done`
            // is set at the first failure); `e` is writable event memory,
            // which yaml_parser_parse fills in on success.
            if unsafe { unsafe_ly::yaml_parser_parse(p, e) }.fail {
                self.done = true;
                return Some(Err(()));
            }
            // SAFETY: `e` was filled in; each union field read is the one
            // its event type names, and each anchor is null or a
            // NUL-terminated string until yaml_event_delete.
            let out = unsafe {
                match (*e).type_ {
                    unsafe_ly::YAML_STREAM_END_EVENT => {
                        self.done = true;
                        None
                    }
                    unsafe_ly::YAML_SEQUENCE_START_EVENT => Some(Event::Open {
                        anchor: anchor((*e).data.sequence_start.anchor),
                    }),
                    unsafe_ly::YAML_MAPPING_START_EVENT => Some(Event::Open {
                        anchor: anchor((*e).data.mapping_start.anchor),
                    }),
                    unsafe_ly::YAML_SEQUENCE_END_EVENT | unsafe_ly::YAML_MAPPING_END_EVENT => {
                        Some(Event::Close)
                    }
                    unsafe_ly::YAML_SCALAR_EVENT => Some(Event::Scalar {
                        anchor: anchor((*e).data.scalar.anchor),
                    }),
                    unsafe_ly::YAML_ALIAS_EVENT => Some(Event::Alias(
                        anchor((*e).data.alias.anchor).unwrap_or_default(),
                    )),
                    _ => None,
                }
            };
            // SAFETY: `e` was filled in by yaml_parser_parse and is deleted
            // once; nothing read from it is kept (anchors were copied).
            unsafe { unsafe_ly::yaml_event_delete(e) };
            if let Some(out) = out {
                return Some(Ok(out));
            }
        }
        None
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: the parser was initialised in `new` (an `Events` exists
        // only then) and is deleted once, here.
        unsafe { unsafe_ly::yaml_parser_delete(self.parser.as_mut_ptr()) };
    }
}

/// What [`measure`] found a file to build, as the YAML loader would build
/// it: aliases expanded.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// Within both limits (or the parser stopped at a syntax error first:
    /// serde_yaml_ng reports it).
    Fits,
    /// Nests deeper than `max_depth`.
    TooDeep,
    /// Builds more than `max_nodes` values.
    TooMany,
}

/// Walks the parser's events of `text` and stops at the first level or
/// value beyond the limits: what serde_yaml_ng would build, each alias
/// counted as the copy of its anchor's values and levels that the loader
/// makes of it. The walk holds one count per anchor, never a value; it
/// stops before the parser goes deeper than the limit, so a file of deep
/// flow brackets (whose parse takes time growing with the square of the
/// depth) costs as little as a shallow one. Neither library bounds this on
/// its own: libyaml has no depth limit, and serde_yaml_ng's (128 levels,
/// and a cap on alias jumps, not on the values they copy) applies only
/// after the parser has read the whole document.
pub fn measure(text: &[u8], max_depth: usize, max_nodes: u64) -> Option<Shape> {
    /// An open sequence or mapping: its anchor, the value count when it
    /// opened, and the deepest level below it so far.
    struct Open {
        anchor: Option<Vec<u8>>,
        nodes_before: u64,
        below: usize,
    }
    let mut nodes: u64 = 0;
    let mut open: Vec<Open> = Vec::new();
    // Per anchor: the values it stands for, and its own depth.
    let mut anchors: std::collections::HashMap<Vec<u8>, (u64, usize)> = Default::default();
    // A value of `size` values and `height` levels at the current place.
    let add = |open: &mut [Open], nodes: &mut u64, size: u64, height: usize| {
        *nodes = nodes.saturating_add(size);
        if *nodes > max_nodes {
            return Some(Shape::TooMany);
        }
        if open.len() + height > max_depth {
            return Some(Shape::TooDeep);
        }
        if let Some(parent) = open.last_mut() {
            parent.below = parent.below.max(height);
        }
        None
    };
    for event in Events::new(text)? {
        let Ok(event) = event else {
            return Some(Shape::Fits);
        };
        let refused = match event {
            Event::Scalar { anchor } => {
                if let Some(a) = anchor {
                    anchors.insert(a, (1, 0));
                }
                add(&mut open, &mut nodes, 1, 0)
            }
            Event::Alias(a) => {
                let (size, height) = anchors.get(&a).copied().unwrap_or((1, 0));
                add(&mut open, &mut nodes, size, height)
            }
            Event::Open { anchor } => {
                let refused = add(&mut open, &mut nodes, 1, 1);
                open.push(Open {
                    anchor,
                    nodes_before: nodes - 1,
                    below: 0,
                });
                refused
            }
            Event::Close => {
                let Some(done) = open.pop() else {
                    continue;
                };
                let height = done.below + 1;
                if let Some(parent) = open.last_mut() {
                    parent.below = parent.below.max(height);
                }
                if let Some(a) = done.anchor {
                    anchors.insert(a, (nodes - done.nodes_before, height));
                }
                None
            }
        };
        if refused.is_some() {
            return refused;
        }
    }
    Some(Shape::Fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<Result<Event, ()>> {
        Events::new(text.as_bytes()).unwrap().collect()
    }

    #[test]
    fn the_events_of_a_document_with_anchors_and_aliases() {
        let open = |a: Option<&str>| {
            Ok(Event::Open {
                anchor: a.map(|a| a.as_bytes().to_vec()),
            })
        };
        let scalar = Ok(Event::Scalar { anchor: None });
        assert_eq!(
            events("a: &x [1, {b: 2}]\nc: *x\n"),
            [
                open(None),
                scalar.clone(),
                open(Some("x")),
                scalar.clone(),
                open(None),
                scalar.clone(),
                scalar.clone(),
                Ok(Event::Close),
                Ok(Event::Close),
                scalar.clone(),
                Ok(Event::Alias(b"x".to_vec())),
                Ok(Event::Close),
            ]
        );
    }

    #[test]
    fn a_syntax_error_ends_the_events() {
        let e = events("a: [1, 2\nb: {");
        assert_eq!(e.last(), Some(&Err(())));
        assert_eq!(e.iter().filter(|e| e.is_err()).count(), 1);
        assert!(events("").is_empty());
        assert_eq!(events("--- 1\n--- 2\n").len(), 2, "every document's");
    }
}
