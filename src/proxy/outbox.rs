//! A write queue of byte chunks for one direction.
//!
//! Frames are forwarded as the very `Bytes` they were read into (no copy, no re-encoding), and
//! everything queued is written with one vectored write where the socket takes it, so a burst
//! of pipelined replies costs one system call rather than one per message.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

/// The most chunks handed to one vectored write.
const MAX_SLICES: usize = 64;

/// Bytes waiting to be written to one peer.
#[derive(Debug, Default)]
pub struct Outbox {
    chunks: VecDeque<Bytes>,
    /// Total queued bytes, for back-pressure.
    queued: usize,
    /// Whether bytes were written since the last flush (TLS buffers them).
    unflushed: bool,
}

impl Outbox {
    /// Queues a chunk.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.queued += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Takes every queued chunk, as one buffer: what would have been written (for tests and
    /// fuzzing; the session writes through [`Self::poll_drain`]).
    pub fn take_all(&mut self) -> Vec<u8> {
        self.queued = 0;
        self.chunks.drain(..).flat_map(|c| c.to_vec()).collect()
    }

    /// Bytes queued and not yet written.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// Whether nothing is waiting to be written or flushed.
    pub fn is_empty(&self) -> bool {
        self.queued == 0 && !self.unflushed
    }

    /// Writes as much as the peer takes now; `Ready(Ok)` once everything is written and flushed.
    pub fn poll_drain<W>(&mut self, cx: &mut Context<'_>, w: &mut W) -> Poll<io::Result<()>>
    where
        W: AsyncWrite + Unpin,
    {
        while !self.chunks.is_empty() {
            let n = if self.chunks.len() == 1 || !w.is_write_vectored() {
                let Some(first) = self.chunks.front() else {
                    break;
                };
                ready!(Pin::new(&mut *w).poll_write(cx, first))?
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(chunk);
                    count += 1;
                }
                let slices = slices.get(..count).unwrap_or_default();
                ready!(Pin::new(&mut *w).poll_write_vectored(cx, slices))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
            self.unflushed = true;
        }
        if self.unflushed {
            ready!(Pin::new(&mut *w).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes as much as a non-blocking socket takes now (the fast lane's sockets, see
    /// `session::lane`): `Ok(true)` once everything is written, `Ok(false)` when the socket
    /// would block with bytes left.
    #[inline]
    pub fn write_now<W: std::io::Write>(&mut self, w: &mut W) -> io::Result<bool> {
        // Most calls find nothing queued: they should cost a comparison, not a call.
        if self.chunks.is_empty() {
            return Ok(true);
        }
        self.write_queued(w)
    }

    #[inline(never)]
    fn write_queued<W: std::io::Write>(&mut self, w: &mut W) -> io::Result<bool> {
        while !self.chunks.is_empty() {
            let written = if self.chunks.len() == 1 {
                match self.chunks.front() {
                    Some(first) => w.write(first),
                    None => break,
                }
            } else {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(chunk);
                    count += 1;
                }
                w.write_vectored(slices.get(..count).unwrap_or_default())
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn consume(&mut self, mut n: usize) {
        self.queued = self.queued.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn drains_every_chunk_in_order() {
        let (mut a, mut b) = tokio::io::duplex(7);
        let mut outbox = Outbox::default();
        for part in ["hello ", "pipelined ", "world"] {
            outbox.push(Bytes::from(part));
        }
        outbox.push(Bytes::new());
        assert_eq!(outbox.len(), 21);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .unwrap();
            got
        });
        poll_fn(|cx| outbox.poll_drain(cx, &mut a)).await.unwrap();
        assert!(outbox.is_empty());
        drop(a);
        assert_eq!(reader.await.unwrap(), b"hello pipelined world");
    }
}
