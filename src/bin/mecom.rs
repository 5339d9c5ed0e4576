//! Placeholder; the real tool lands next.
fn main() {}
