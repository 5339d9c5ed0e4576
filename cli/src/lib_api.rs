//! Everything the tool takes from the `mecom` library, in one place: the
//! rest of the tool names these re-exports, never `mecom::` paths, so a
//! change of the library's public names is a change of this file only.

pub use mecom::classify::{count_zero_bytes, fill_word, full_similarity};
pub use mecom::codecs::sparse;
pub use mecom::{
    slot_name, Config, Counters, Decoder, Encoder, LinkStats, LzCodec, Mode, PageCache, Placement,
    METHOD_SLOTS,
};
