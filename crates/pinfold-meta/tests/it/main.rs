//! Integration tests of pinfold-meta: one behaviour suite (`suite.rs`) run against every engine,
//! plus what is specific to an engine (durability, reopening, speed).

mod postgres;
mod sqlite;
mod suite;
