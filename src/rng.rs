//! Seeded generators for work cut into parts: each part draws from its own stream, so parts can
//! run in parallel and the result depends on the seed alone, not on the number of threads.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator of part `part` of the work `stream` (e.g. one per use) under `seed`.
pub(crate) fn part_rng(seed: u64, stream: u64, part: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    // Parts lie 2^40 words apart in the stream, more than any part draws.
    rng.set_word_pos((part as u128) << 40);
    rng
}
