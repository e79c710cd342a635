//! Minimal strict DER reader: walks tag-length-value items over a borrowed slice.
//!
//! Strict means: definite minimal lengths only, single-byte tags only, nothing may run past its
//! parent, and callers check that nothing is left over. Every failure is a [`DerError`].

/// Why a byte string is not the DER we expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DerError {
    /// The input ended inside a tag, length or value.
    #[error("DER truncated")]
    Truncated,
    /// Indefinite, non-minimal or oversized length encoding.
    #[error("DER length not in minimal definite form")]
    BadLength,
    /// Bytes remained after the structure ended.
    #[error("trailing data after DER structure")]
    TrailingData,
    /// A different tag was found where another one is required.
    #[error("unexpected DER tag 0x{found:02x} (expected 0x{expected:02x})")]
    UnexpectedTag {
        /// Tag the grammar requires here.
        expected: u8,
        /// Tag actually present.
        found: u8,
    },
    /// A required element was missing at the end of its parent.
    #[error("missing DER element (expected tag 0x{expected:02x})")]
    Missing {
        /// Tag the grammar requires here.
        expected: u8,
    },
    /// Multi-byte (high-number) tags never occur in the structures we read.
    #[error("high-number DER tag")]
    HighTagNumber,
    /// An INTEGER is empty or not minimally encoded.
    #[error("INTEGER not minimally encoded")]
    BadInteger,
    /// A primitive value has content that its type forbids (BOOLEAN, NULL, BIT STRING, ...).
    #[error("invalid DER primitive value")]
    BadValue,
}

/// One decoded tag-length-value item.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tlv<'a> {
    /// The value octets.
    pub content: &'a [u8],
    /// The whole encoding, tag and length included.
    pub raw: &'a [u8],
}

/// Cursor over a sequence of TLVs.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    /// Tag of the next item, if any.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// Whether all input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Reads the next item, whatever its tag.
    pub fn read_any(&mut self) -> Result<Tlv<'a>, DerError> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::HighTagNumber);
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            // 0x80 is indefinite (BER only); more than 4 length octets is never legitimate here.
            if n == 0 || n > 4 {
                return Err(DerError::BadLength);
            }
            if after_len.len() < n {
                return Err(DerError::Truncated);
            }
            let (len_bytes, rest) = after_len.split_at(n);
            after_len = rest;
            if len_bytes[0] == 0 {
                return Err(DerError::BadLength);
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return Err(DerError::BadLength);
            }
            len
        };
        if after_len.len() < len {
            return Err(DerError::Truncated);
        }
        let header_len = input.len() - after_len.len();
        let (content, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok(Tlv {
            content,
            raw: &input[..header_len + len],
        })
    }

    /// Reads the next item, which must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, DerError> {
        match self.peek_tag() {
            None => Err(DerError::Missing { expected: tag }),
            Some(found) if found != tag => Err(DerError::UnexpectedTag {
                expected: tag,
                found,
            }),
            Some(_) => self.read_any(),
        }
    }

    /// Reads the next item only if it carries `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read_any().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Fails unless all input has been consumed.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }
}

/// Parses `input` as exactly one TLV with `tag` and nothing after it.
pub(crate) fn single(input: &[u8], tag: u8) -> Result<Tlv<'_>, DerError> {
    let mut r = Reader::new(input);
    let tlv = r.expect(tag)?;
    r.finish()?;
    Ok(tlv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_minimal_and_indefinite_lengths() {
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x01, 0]).read_any().err(),
            Some(DerError::BadLength)
        );
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0, 0]).read_any().err(),
            Some(DerError::BadLength)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x00, 0x80]).read_any().err(),
            Some(DerError::BadLength)
        );
    }

    #[test]
    fn reports_truncation_and_trailing_data() {
        assert_eq!(
            Reader::new(&[0x04, 0x02, 0]).read_any().err(),
            Some(DerError::Truncated)
        );
        assert_eq!(
            single(&[0x05, 0x00, 0x00], 0x05).err(),
            Some(DerError::TrailingData)
        );
        assert!(single(&[0x05, 0x00], 0x05).is_ok());
    }

    #[test]
    fn long_form_lengths_are_read() {
        let mut v = vec![0x04, 0x81, 0x80];
        v.extend(std::iter::repeat_n(7, 0x80));
        let t = single(&v, 0x04).unwrap();
        assert_eq!(t.content.len(), 0x80);
        assert_eq!(t.raw.len(), v.len());
    }
}
