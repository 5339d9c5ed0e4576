//! Does a sample of a batch's pages predict its class mix as well as
//! classifying every page?
//!
//! An all-raw plan classifies pages only on its exploring batches, to keep
//! the class mix fresh: the mix decides whether the classes that would
//! compress are rare enough (`RAW_ENOUGH`, 3 % of pages) to leave
//! everything raw.  For batches of 128 non-zero pages of each image (as
//! multifd hands them out after its zero-page detection), this compares
//! the mix of every page with the mix of one page in `K` (pages 0, K, 2K,
//! ...) for K = 2, 4, 8: the mean absolute difference in the share of
//! pages that are not random (the ones a plan could compress), the
//! largest, and the share of batches where the two disagree on whether
//! that share is under 3 %.  Classifying costs one `profile` per
//! classified page, so one in K costs 1/K of it.
//!
//! Usage: `cargo run --release --example sample_mix -- IMAGE.raw...`

use mecom::classify::{profile, PageClass};
use mecom::policy::{Policy, RAW_ENOUGH};
use mecom::Config;

const BATCH: usize = 128;

fn main() {
    // The encoder's own thresholds, as its plans carry them.
    let thresholds = Policy::new(&Config::default()).plan().thresholds;
    println!("| image | batches | K | mean abs. diff. | largest | decision differs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("read image");
        let ps = 4096;
        let classes: Vec<PageClass> = data
            .chunks_exact(ps)
            .filter(|p| p.iter().any(|&b| b != 0))
            .map(|p| thresholds.class(&profile(p), ps))
            .collect();
        let compressible = |batch: &[PageClass], stride: usize| {
            let sampled: Vec<&PageClass> = batch.iter().step_by(stride).collect();
            let n = sampled.iter().filter(|&&&c| c != PageClass::Random).count();
            n as f64 / sampled.len() as f64
        };
        let name = path.rsplit('/').next().unwrap_or(&path);
        for stride in [2, 4, 8] {
            let (mut sum, mut max, mut differ, mut batches) = (0.0f64, 0.0f64, 0, 0);
            for batch in classes.chunks_exact(BATCH) {
                let full = compressible(batch, 1);
                let sample = compressible(batch, stride);
                let diff = (full - sample).abs();
                sum += diff;
                max = max.max(diff);
                differ += usize::from((full < RAW_ENOUGH) != (sample < RAW_ENOUGH));
                batches += 1;
            }
            println!(
                "| {name} | {batches} | {stride} | {:.3} | {max:.3} | {:.1} % |",
                sum / batches as f64,
                100.0 * differ as f64 / batches as f64
            );
        }
    }
}
