//! The rows of the table, one module a group.

mod compare;
mod footprint;
mod idle;
mod rotation;
mod startup;
mod sts_calls;
mod writes;

pub(crate) use compare::row_compare;
pub(crate) use footprint::{row_rss, row_size};
pub(crate) use idle::{row_idle, row_idle_layouts};
pub(crate) use rotation::row_rotation;
pub(crate) use startup::row_startup;
pub(crate) use sts_calls::{row_burst, row_sts_calls};
pub(crate) use writes::row_writes;
