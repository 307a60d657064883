//! Commit throughput benchmark (filled in with the SQL and Redis backends).

fn main() {}
