//! Sub-chunk deltas (`ChunkData.encoding` 2, protocol version 3): a changed chunk travels as
//! the difference from a similar chunk the receiver already has, so a small edit inside a big
//! file costs about its own size on the wire rather than one or two whole chunks.
//!
//! It is the rsync algorithm, from the `fast_rsync` crate: the side that has the old chunk
//! sends its *signature* (a rolling checksum and a short MD4 per block of
//! [`SIGNATURE_BLOCK`] bytes: about 1/170 of the chunk), the side that has the new chunk
//! answers with a *delta* (copy this block, insert these bytes). MD4 is weak, so a delta is
//! never trusted: the receiver checks the rebuilt chunk against its BLAKE3 hash, as every
//! chunk is checked, and a delta that rebuilds something else is refused like any damaged data.
//!
//! Signatures come from the other side and may be hostile: [`diff`] accepts only the format and
//! parameters FileSync itself produces, within bounds, and [`apply`] never writes more than the
//! limit it is given.

use bytes::Bytes;

/// Bytes per signature block. Smaller blocks find smaller changes but make longer signatures
/// (12 bytes per block: 6 KiB for a 1 MiB chunk).
pub const SIGNATURE_BLOCK: u32 = 2048;
/// Bytes of each block's MD4 kept in a signature.
pub const SIGNATURE_HASH: u32 = 8;
/// Chunks smaller than this travel whole: a delta would save too little to pay for the
/// signature and the round trip.
pub const MIN_DELTA_CHUNK: usize = 64 * 1024;

const HEADER: usize = 12;
const MAGIC_MD4: [u8; 4] = [0x72, 0x73, 0x01, 0x36];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeltaError {
    #[error("the signature is damaged or not one FileSync makes")]
    BadSignature,
    #[error("the delta is damaged, or rebuilds more than {0} bytes")]
    BadDelta(usize),
}

/// The signature of `base`, to send to whoever has a newer version of it.
pub fn signature(base: &[u8]) -> Bytes {
    let options = fast_rsync::SignatureOptions { block_size: SIGNATURE_BLOCK, crypto_hash_size: SIGNATURE_HASH };
    Bytes::from(fast_rsync::Signature::calculate(base, options).into_serialized())
}

/// The delta that rebuilds `data` from the chunk `signature` describes. Refuses a signature
/// with other parameters than [`signature`] uses, or longer than one for `max_base` bytes.
pub fn diff(signature: &[u8], data: &[u8], max_base: usize) -> Result<Bytes, DeltaError> {
    if signature.len() < HEADER
        || signature[..4] != MAGIC_MD4
        || signature[4..8] != SIGNATURE_BLOCK.to_be_bytes()
        || signature[8..12] != SIGNATURE_HASH.to_be_bytes()
        || signature.len() > HEADER + max_base.div_ceil(SIGNATURE_BLOCK as usize) * (4 + SIGNATURE_HASH as usize)
    {
        return Err(DeltaError::BadSignature);
    }
    let sig = fast_rsync::Signature::deserialize(signature.to_vec()).map_err(|_| DeltaError::BadSignature)?;
    let mut out = Vec::new();
    fast_rsync::diff(&sig.index(), data, &mut out).map_err(|_| DeltaError::BadSignature)?;
    Ok(Bytes::from(out))
}

/// `base` with `delta` applied, refusing to rebuild more than `max_len` bytes. The caller
/// verifies the result against the chunk's hash.
pub fn apply(base: &[u8], delta: &[u8], max_len: usize) -> Result<Bytes, DeltaError> {
    let mut out = Vec::new();
    fast_rsync::apply_limited(base, delta, &mut out, max_len).map_err(|_| DeltaError::BadDelta(max_len))?;
    Ok(Bytes::from(out))
}

/// Whether a delta of `delta_len` bytes is worth sending instead of the chunk encoded in
/// `whole_len` bytes: it must save at least a tenth.
pub fn pays(delta_len: usize, whole_len: usize) -> bool {
    delta_len * 10 < whole_len * 9
}

#[cfg(test)]
mod tests {
    use super::*;
    use filesync_core::testdata::random_bytes as noise;

    #[test]
    fn a_small_insert_in_a_big_chunk_costs_about_its_own_size() {
        let old = noise(1 << 20, 7);
        let mut new = old[..400_000].to_vec();
        new.extend(noise(4096, 9));
        new.extend_from_slice(&old[400_000..]);
        let sig = signature(&old);
        assert!(sig.len() < 7 * 1024, "signature of 1 MiB: {} bytes", sig.len());
        let d = diff(&sig, &new, 4 << 20).unwrap();
        assert!(d.len() < 4096 + 2 * SIGNATURE_BLOCK as usize + 256, "delta {} bytes", d.len());
        assert_eq!(apply(&old, &d, 4 << 20).unwrap(), new);
        assert!(pays(d.len(), new.len()));
    }

    #[test]
    fn unrelated_data_does_not_pay_and_still_rebuilds() {
        let old = noise(200_000, 1);
        let new = noise(200_000, 2);
        let d = diff(&signature(&old), &new, 4 << 20).unwrap();
        assert!(!pays(d.len(), new.len()));
        assert_eq!(apply(&old, &d, 4 << 20).unwrap(), new);
    }

    #[test]
    fn hostile_signatures_and_deltas_are_refused() {
        let old = noise(100_000, 3);
        let sig = signature(&old);
        // Other parameters than ours.
        let small_blocks = fast_rsync::Signature::calculate(
            &old,
            fast_rsync::SignatureOptions { block_size: 1, crypto_hash_size: SIGNATURE_HASH },
        );
        assert_eq!(diff(small_blocks.serialized(), &old, 4 << 20), Err(DeltaError::BadSignature));
        assert_eq!(diff(&sig[..5], &old, 4 << 20), Err(DeltaError::BadSignature));
        assert_eq!(diff(&sig[..sig.len() - 3], &old, 4 << 20), Err(DeltaError::BadSignature));
        // Longer than a signature of the largest chunk.
        assert_eq!(diff(&sig, &old, 10_000), Err(DeltaError::BadSignature));
        // A delta cannot rebuild beyond the limit, nor be garbage.
        let d = diff(&sig, &old, 4 << 20).unwrap();
        assert_eq!(apply(&old, &d, 50_000), Err(DeltaError::BadDelta(50_000)));
        assert_eq!(apply(&old, b"not a delta", 4 << 20), Err(DeltaError::BadDelta(4 << 20)));
    }
}
