//! The library half of the `xcomponent-ai` command-line tool: what the offline commands (`run`,
//! `simulate`) share with the golden tests, which drive the reference examples through exactly
//! the code the commands use.

pub mod offline;
