//! Trace and span identifiers as lowercase hex, the form stored and served.

/// Lowercase hex of raw ID bytes (`trace_id` → 32 chars, `span_id` → 16 chars).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

/// The byte two hex digits spell (either case).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// Raw bytes of a lowercase or uppercase hex ID; `None` when it is not hex of even length.
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.as_bytes().chunks(2).map(hex_byte).collect()
}

/// Raw bytes of a hex ID of exactly `N` bytes, without allocating (the span store's write path).
pub fn from_hex_array<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let hex = hex.as_bytes();
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = hex_byte(pair)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let raw = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&raw), "0001abff");
        assert_eq!(from_hex("0001ABff").unwrap(), raw);
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex_array::<4>("0001ABff"), Some(raw));
        assert_eq!(from_hex_array::<4>("0001ab"), None, "wrong length");
        assert_eq!(from_hex_array::<1>("zz"), None);
    }
}
