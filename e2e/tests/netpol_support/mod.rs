//! Support for tests/netpol.rs: the matrix cases and the dynamic tests.

pub mod cases;
pub mod dynamics;
