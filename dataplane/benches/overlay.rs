//! Overlay lookup benches (placeholder while being written).
fn main() {}
