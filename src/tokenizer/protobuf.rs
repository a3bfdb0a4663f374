//! A minimal, bounds-checked reader of the protobuf wire format (what `spiece.model` is).
//!
//! Follows the encoding spec (protobuf.dev, "Encoding"): a message is a sequence of
//! `key = field_number << 3 | wire_type` varints, each followed by its value: a varint (0),
//! 8 bytes (1), a varint length and that many bytes (2), or 4 bytes (5). Groups (3, 4) are
//! deprecated and unused by SentencePiece, so they are refused. Values borrow from the input,
//! so a lying length is caught before anything is allocated.

/// One field's value, borrowed from the message bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    pub(crate) fn wire_name(&self) -> &'static str {
        match self {
            Value::Varint(_) => "varint",
            Value::Fixed64(_) => "64-bit",
            Value::Bytes(_) => "length-delimited",
            Value::Fixed32(_) => "32-bit",
        }
    }
}

/// Iterates over the fields of one message; every error says at which byte it happened.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at byte {start}"));
            };
            self.pos += 1;
            // The tenth byte may only hold the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(format!("varint longer than 64 bits at byte {start}"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {start}"))
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        let left = self.buf.len() - self.pos;
        if n > left as u64 {
            return Err(format!(
                "{what} of {n} bytes at byte {} but only {left} bytes are left",
                self.pos
            ));
        }
        let out = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(out)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(format!("invalid field number {field} at byte {at}"));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8, "64-bit value")?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().map_err(|_| "8 bytes")?))
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n, "length-delimited field")?)
            }
            5 => {
                let b = self.take(4, "32-bit value")?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().map_err(|_| "4 bytes")?))
            }
            w => {
                return Err(format!(
                    "wire type {w} of field {field} at byte {at} is not supported"
                ))
            }
        };
        Ok(Some((field as u32, value)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes a varint (for building test messages).
    pub(crate) fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn all(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, String> {
        let mut r = Reader::new(buf);
        let mut out = Vec::new();
        while let Some(f) = r.next_field()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reads_every_wire_type() {
        let mut m = Vec::new();
        varint(1 << 3, &mut m);
        varint(300, &mut m);
        varint((2 << 3) | 2, &mut m);
        varint(3, &mut m);
        m.extend(b"abc");
        varint((3 << 3) | 5, &mut m);
        m.extend(1.5f32.to_le_bytes());
        varint((4 << 3) | 1, &mut m);
        m.extend(7u64.to_le_bytes());
        varint(1000 << 3, &mut m);
        varint(u64::MAX, &mut m);
        assert_eq!(
            all(&m).unwrap(),
            vec![
                (1, Value::Varint(300)),
                (2, Value::Bytes(b"abc")),
                (3, Value::Fixed32(1.5f32.to_bits())),
                (4, Value::Fixed64(7)),
                (1000, Value::Varint(u64::MAX)),
            ]
        );
    }

    #[test]
    fn broken_messages_are_errors() {
        // A length that lies (says 200, 3 bytes follow), without allocating 200 bytes.
        let e = all(&[0x0a, 0xc8, 0x01, b'a', b'b', b'c']).unwrap_err();
        assert!(
            e.contains("200 bytes") && e.contains("3 bytes are left"),
            "{e}"
        );
        // A length of 2^63.
        let mut m = vec![0x0a];
        varint(1 << 63, &mut m);
        assert!(all(&m).unwrap_err().contains("length-delimited"));
        // Truncated varint, fixed32, fixed64.
        assert!(all(&[0x08, 0x80]).unwrap_err().contains("truncated varint"));
        assert!(all(&[0x0d, 1, 2]).unwrap_err().contains("32-bit"));
        assert!(all(&[0x09, 1, 2]).unwrap_err().contains("64-bit"));
        // Eleven-byte varint; a tenth byte above 1.
        assert!(
            all(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err()
        );
        assert!(all(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err());
        // Field number 0, groups, wire types 6 and 7.
        for key in [0x00u8, 0x0b, 0x0c, 0x0e, 0x0f] {
            assert!(all(&[key, 0]).is_err(), "key {key:#x}");
        }
    }
}
