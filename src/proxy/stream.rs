//! A connection to either peer: plain TCP, or TLS on top of it (server side towards clients,
//! client side towards the upstream).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

/// One side's byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plaintext TCP.
    Tcp(TcpStream),
    /// TLS terminated by ddlgate (client leg).
    ServerTls(Box<server::TlsStream<TcpStream>>),
    /// TLS originated by ddlgate (upstream leg).
    ClientTls(Box<client::TlsStream<TcpStream>>),
    /// The socket is on the fast lane (`session::lane`) with its session; nothing reads or
    /// writes this placeholder meanwhile.
    Away,
}

impl Stream {
    /// Whether the stream is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::ServerTls(_) | Self::ClientTls(_))
    }
}

fn away() -> io::Error {
    io::Error::other("the socket is with its session on the fast lane")
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::ServerTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::ClientTls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
            Stream::Away => Poll::Ready(Err(away())),
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Tcp(s) => s.is_write_vectored(),
            Self::ServerTls(s) => s.is_write_vectored(),
            Self::ClientTls(s) => s.is_write_vectored(),
            Self::Away => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}
