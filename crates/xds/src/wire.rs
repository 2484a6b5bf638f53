//! Just enough of the protobuf wire format to write xDS responses around resources that
//! were encoded once: length-delimited fields, their keys and their lengths.

use bytes::BufMut;

/// The wire type of strings, bytes and embedded messages.
const LEN: u32 = 2;

/// The encoded length of `value` as a varint.
pub(crate) fn varint_len(value: u64) -> usize {
    // One byte per started group of seven bits, at least one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Writes `value` as a varint.
pub(crate) fn put_varint(buf: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// The encoded length of a length-delimited field `field` holding `len` bytes.
pub(crate) fn field_len(field: u32, len: usize) -> usize {
    varint_len(u64::from(field << 3)) + varint_len(len as u64) + len
}

/// Writes the key and length of a length-delimited field; its `len` bytes come next.
pub(crate) fn put_field_head(buf: &mut impl BufMut, field: u32, len: usize) {
    put_varint(buf, u64::from(field << 3 | LEN));
    put_varint(buf, len as u64);
}

/// Writes a length-delimited field with its bytes.
pub(crate) fn put_field(buf: &mut impl BufMut, field: u32, bytes: &[u8]) {
    put_field_head(buf, field, bytes.len());
    buf.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_prost() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut ours = Vec::new();
            put_varint(&mut ours, value);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(value, &mut theirs);
            assert_eq!(ours, theirs, "{value}");
            assert_eq!(varint_len(value), theirs.len(), "{value}");
        }
    }

    #[test]
    fn fields_match_prost() {
        let mut ours = Vec::new();
        put_field(&mut ours, 4, b"type.googleapis.com/x");
        let mut theirs = Vec::new();
        prost::encoding::string::encode(4, &"type.googleapis.com/x".to_string(), &mut theirs);
        assert_eq!(ours, theirs);
        assert_eq!(field_len(4, 21), theirs.len());
    }
}
