//! The coordinator's tests, in one binary: the commands as people run them,
//! and the totals' intervals against real noise.

mod cli;
mod coverage;
