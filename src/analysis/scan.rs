//! Finding the first of a few bytes in a text, eight bytes at a time.
//!
//! The pre-filter walks every byte of every plain query the proxy forwards, looking for the
//! few that can change what follows (quotes, `$`, comment starts, `;`, the `i` of `INTO`), and
//! the review looks for one word in the same text. A byte-by-byte loop costs several
//! instructions per byte; here each block of eight bytes is read as one `u64` and tested for
//! the set's bytes with a few word operations (no `unsafe`, no SIMD intrinsics), and only a
//! block that may hold one is looked at byte by byte. The word test may find bytes that are not
//! in the set (the block is then read exactly); it never misses one that is, which the tests
//! below check for every byte value in every position.

/// A set of bytes to find in a text.
pub(crate) struct ByteSet {
    members: [bool; 256],
    quick: Quick,
}

/// The word test of a set: true for every block holding a member.
#[derive(Clone, Copy)]
enum Quick {
    /// Any byte from 0x22 to 0x27 (`"`, `$`, `'` among them), `-`, `/` or `;`, and with
    /// `letter`, that letter in either case.
    Punctuation { letter: Option<u8> },
    /// One ASCII letter, in either case.
    Letter(u8),
}

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = ONES * 0x7F;
const HIGH: u64 = ONES * 0x80;
const CASE: u64 = ONES * 0x20;

// Each test below leaves the high bit of a byte set where the byte may match, and never
// clears it where it does; their results are OR-ed and tested once per block.

/// High bits where a byte of `word` may be zero.
fn zero_bits(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGH
}

/// High bits where a byte of `word` may be `byte`.
fn byte_bits(word: u64, byte: u8) -> u64 {
    zero_bits(word ^ (ONES * u64::from(byte)))
}

/// High bits where a byte of `word` may be a lowercase ASCII `letter` or its uppercase
/// (`| 0x20` maps exactly those two bytes to the lowercase one).
fn letter_bits(word: u64, letter: u8) -> u64 {
    byte_bits(word | CASE, letter)
}

/// High bits where a byte of `word` is above `low` and below `high` (both below 0x80; bytes
/// from 0x80 up never count).
fn between_bits(word: u64, low: u8, high: u8) -> u64 {
    let seven = word & LOW7;
    (ONES * (127 + u64::from(high))).wrapping_sub(seven)
        & !word
        & seven.wrapping_add(ONES * (127 - u64::from(low)))
        & HIGH
}

impl ByteSet {
    /// The pre-filter's stops: `"`, `$`, `'`, `-`, `/`, `;`, and with `into` also `i` and `I`.
    pub(crate) const fn stops(into: bool) -> Self {
        let mut members = [false; 256];
        members[b'"' as usize] = true;
        members[b'$' as usize] = true;
        members[b'\'' as usize] = true;
        members[b'-' as usize] = true;
        members[b'/' as usize] = true;
        members[b';' as usize] = true;
        if into {
            members[b'i' as usize] = true;
            members[b'I' as usize] = true;
        }
        Self {
            members,
            quick: Quick::Punctuation {
                letter: if into { Some(b'i') } else { None },
            },
        }
    }

    /// A lowercase ASCII letter in either case.
    pub(crate) const fn letter(lower: u8) -> Self {
        let mut members = [false; 256];
        members[lower as usize] = true;
        members[lower.to_ascii_uppercase() as usize] = true;
        Self {
            members,
            quick: Quick::Letter(lower),
        }
    }

    fn has(&self, b: u8) -> bool {
        self.members.get(usize::from(b)).copied().unwrap_or(false)
    }

    fn may_hold(&self, word: u64) -> bool {
        // 0x22 to 0x27 are `"`, `#`, `$`, `%`, `&`, `'`: rare in SQL outside the three that
        // count. The commas, parentheses, dots and operators of ordinary statements stay out.
        let punctuation = || {
            between_bits(word, 0x21, 0x28)
                | byte_bits(word, b'-')
                | byte_bits(word, b'/')
                | byte_bits(word, b';')
        };
        let bits = match self.quick {
            Quick::Punctuation { letter: None } => punctuation(),
            Quick::Punctuation { letter: Some(l) } => punctuation() | letter_bits(word, l),
            Quick::Letter(l) => letter_bits(word, l),
        };
        bits != 0
    }

    /// Where the first member of the set is in `text`.
    pub(crate) fn find(&self, text: &[u8]) -> Option<usize> {
        let mut blocks = text.chunks_exact(8);
        let mut offset = 0;
        for block in &mut blocks {
            let word = u64::from_le_bytes(block.try_into().unwrap_or([0; 8]));
            if self.may_hold(word)
                && let Some(at) = block.iter().position(|&b| self.has(b))
            {
                return Some(offset + at);
            }
            offset += 8;
        }
        blocks
            .remainder()
            .iter()
            .position(|&b| self.has(b))
            .map(|at| offset + at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets() -> Vec<ByteSet> {
        vec![
            ByteSet::stops(false),
            ByteSet::stops(true),
            ByteSet::letter(b'g'),
            ByteSet::letter(b'd'),
        ]
    }

    #[test]
    fn the_word_test_never_misses_a_member_in_any_position() {
        for set in sets() {
            for byte in 0..=255u8 {
                for filler in [b'a', b' ', b'0', b'Z', 0x00, 0x21, 0x30, 0x7F, 0x80, 0xFF] {
                    for at in 0..8 {
                        let mut block = [filler; 8];
                        block[at] = byte;
                        let word = u64::from_le_bytes(block);
                        if set.has(byte) {
                            assert!(set.may_hold(word), "byte {byte:#x} at {at} in {block:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn find_agrees_with_a_plain_search() {
        // A deterministic mix of SQL-ish bytes, members among them, at every length and offset.
        let alphabet = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1; -- 'x' \"y\" /* */ INTO gd\xc3\xa9";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = usize::try_from(state % 40).unwrap();
            let text: Vec<u8> = (0..len)
                .map(|i| {
                    let mixed = usize::try_from((state >> (i % 50)) & 0xFFFF).unwrap();
                    alphabet[(mixed + i * 7) % alphabet.len()]
                })
                .collect();
            for set in sets() {
                assert_eq!(
                    set.find(&text),
                    text.iter().position(|&b| set.has(b)),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }
}
