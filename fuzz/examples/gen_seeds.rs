//! Writes seed inputs for every fuzz target: real frames of mixed pages for
//! the frame decoders, codec payloads of real pages, random bytes for the
//! structured targets.
//!
//! ```sh
//! cargo run --release --manifest-path fuzz/Cargo.toml --example gen_seeds -- \
//!     [OUT_DIR (default fuzz/corpus)] [FILES_PER_TARGET (default 16)] [SEED]
//! ```
//! Files go to OUT_DIR/<target>/seed-NN; `fuzz/seeds/` holds a checked-in
//! set made with `fuzz/seeds 16 1`.

use mecom_fuzz::props::{seed_inputs, TARGETS};
use std::collections::HashMap;
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "fuzz/corpus".into()));
    let per_target: usize = args
        .next()
        .map_or(16, |a| a.parse().expect("FILES_PER_TARGET"));
    let seed: u64 = args.next().map_or(1, |a| a.parse().expect("SEED"));
    for t in TARGETS {
        std::fs::create_dir_all(out.join(t)).expect("create corpus dir");
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (target, input) in seed_inputs(seed, per_target) {
        let k = counts.entry(target).or_default();
        let path = out.join(target).join(format!("seed-{:02}", *k));
        *k += 1;
        std::fs::write(&path, input).expect("write seed");
    }
    for t in TARGETS {
        println!(
            "{t}: {} seeds in {}",
            counts.get(t).copied().unwrap_or(0),
            out.join(t).display()
        );
    }
}
