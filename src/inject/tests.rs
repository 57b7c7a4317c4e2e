//! Unit tests of the pieces; the whole is tested from the command line
//! (tests/inject.rs) and by properties (tests/inject_properties.rs).
