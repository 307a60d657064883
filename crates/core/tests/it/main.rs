//! The integration tests of xcomponent-core, as one test binary (faster to build than one binary
//! per file). Each module covers one area; add yours with a `mod` line.

mod engine;
mod step_data;
mod validate;
