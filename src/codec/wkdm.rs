//! TEMPORARY STUB: replaced by the real WKdm codec.
#![forbid(unsafe_code)]
/// Dictionary slot of a word.
#[inline]
pub(crate) fn dict_index(word: u32) -> usize {
    ((word >> 10).wrapping_mul(0x9E37_79B1) >> 28) as usize
}
/// Worst case.
pub(crate) const fn max_encoded_len(page_len: usize) -> usize {
    page_len + page_len / 8 + 16
}
/// Stub.
pub(crate) fn encode(_page: &[u8], _out: &mut [u8], _limit: usize) -> Option<usize> {
    None
}
/// Stub.
pub(crate) fn decode(_src: &[u8], _page: &mut [u8]) -> Result<(), &'static str> {
    Err("stub")
}
