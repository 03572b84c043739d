//! The hash chain: each line carries the SHA-256 of the line before it.

use std::io;

use sha2::{Digest, Sha256};

use super::record::Record;

/// `prev` of the first record of a trail.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Where the chain stands: the last record's `seq` and the hash of its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainState {
    /// `seq` of the last record written (0 before the first).
    pub seq: u64,
    /// SHA-256 (hex) of the last line written.
    pub prev: String,
}

impl Default for ChainState {
    fn default() -> Self {
        Self {
            seq: 0,
            prev: GENESIS.to_owned(),
        }
    }
}

impl ChainState {
    /// The chain after `line` (the last line of an existing trail).
    pub(crate) fn after_line(line: &[u8]) -> Result<Self, String> {
        let record: Record = serde_json::from_slice(line)
            .map_err(|e| format!("its last line is not an audit record ({e})"))?;
        Ok(Self {
            seq: record.seq,
            prev: hash(line),
        })
    }

    /// Gives `record` its place in the chain and returns its line (without newline).
    pub(crate) fn seal(&self, record: &mut Record) -> io::Result<Vec<u8>> {
        record.seq = self.seq.saturating_add(1);
        record.prev.clone_from(&self.prev);
        serde_json::to_vec(record).map_err(io::Error::other)
    }

    /// Moves past a line that was written.
    pub(crate) fn advance(&mut self, line: &[u8], seq: u64) {
        self.seq = seq;
        self.prev = hash(line);
    }
}

/// SHA-256 of a line, lowercase hex.
pub(crate) fn hash(line: &[u8]) -> String {
    let digest = Sha256::digest(line);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn seal_links_records() {
        let mut chain = ChainState::default();
        let mut first = Record::new("statement", 1);
        let line = chain.seal(&mut first).unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(first.prev, GENESIS);
        chain.advance(&line, first.seq);
        let mut second = Record::new("statement", 1);
        chain.seal(&mut second).unwrap();
        assert_eq!(second.seq, 2);
        assert_eq!(second.prev, hash(&line));
        assert_eq!(ChainState::after_line(&line).unwrap().prev, hash(&line));
    }
}
