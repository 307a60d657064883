//! Running components offline, in this process: load the files ([`load`]), read the scripted
//! inputs ([`script`]), drive a runtime step by step ([`session`]) and print what happened
//! ([`trace`], [`report`]).

pub mod load;
pub mod report;
pub mod script;
pub mod session;
pub mod trace;
