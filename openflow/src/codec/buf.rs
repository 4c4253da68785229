//! Bounded reading and writing of big-endian wire structures.
//!
//! Every read checks the remaining length first and returns
//! [`Error::Truncated`] instead of panicking; there is no indexing into wire
//! data anywhere else in the codec.

use crate::error::{Error, Result};

/// A cursor over received bytes. Never reads past its slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, what }
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn rest(&self) -> &'a [u8] {
        self.data
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.data.len() {
            return Err(Error::Truncated {
                what: self.what,
                need: n,
                have: self.data.len(),
            });
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    /// A sub-reader over the next `n` bytes, labelled `what`.
    pub fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>> {
        let what_outer = self.what;
        let bytes = self.bytes(n).map_err(|e| match e {
            Error::Truncated { need, have, .. } => Error::Truncated {
                what: if what.is_empty() { what_outer } else { what },
                need,
                have,
            },
            other => other,
        })?;
        Ok(Reader::new(bytes, what))
    }

    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(drop)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Peeks a big-endian u16 without consuming it.
    pub fn peek_u16(&self) -> Result<u16> {
        let mut copy = *self;
        copy.u16()
    }
}

/// Appends big-endian values to a byte vector.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
    /// Pads with zeros to a multiple of 8 bytes, counted from `start`.
    fn pad8_from(&mut self, start: usize);
    /// Overwrites the big-endian u16 at `at` (a length placeholder).
    fn set_u16(&mut self, at: usize, v: u16);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn pad8_from(&mut self, start: usize) {
        let len = self.len() - start;
        self.put_zeros(pad8(len) - len);
    }
    fn set_u16(&mut self, at: usize, v: u16) {
        if let Some(slot) = self.get_mut(at..at + 2) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// `n` rounded up to a multiple of 8.
pub(crate) const fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// Converts a structure length to the u16 the wire wants, or fails.
pub(crate) fn len16(what: &'static str, len: usize) -> Result<u16> {
    u16::try_from(len).map_err(|_| Error::TooLong {
        what,
        len,
        max: u16::MAX as usize,
    })
}

/// The length a raw TLV (action, instruction) declares in bytes 2..4.
pub(crate) fn declared_len(raw: &[u8]) -> Option<usize> {
    let field: [u8; 2] = raw.get(2..4)?.try_into().ok()?;
    Some(usize::from(u16::from_be_bytes(field)))
}

/// Reads a TLV-ish length field and checks it against the minimum and what is
/// left.
pub(crate) fn check_len(
    what: &'static str,
    len: usize,
    min: usize,
    available: usize,
) -> Result<usize> {
    if len < min || len > available {
        return Err(Error::BadLength { what, len });
    }
    Ok(len)
}
