//! Device configuration spaces as little-endian byte images.

/// Copies `data.len()` bytes of `config` from `offset`; bytes past its end read 0.
pub fn read(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

/// Writes `value` little-endian at `offset` (a field offset within the image).
pub fn put<const N: usize>(config: &mut [u8], offset: usize, value: [u8; N]) {
    config[offset..offset + N].copy_from_slice(&value);
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_past_the_end_are_zero() {
        let config = [1u8, 2, 3];
        let mut out = [0xff; 4];
        super::read(&config, 1, &mut out);
        assert_eq!(out, [2, 3, 0, 0]);
        super::read(&config, u64::MAX, &mut out);
        assert_eq!(out, [0; 4]);
    }
}
