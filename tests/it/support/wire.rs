//! A raw protocol client for tests that assert exact message sequences. Its encoders are
//! written independently of ddlgate's, so a shared misunderstanding cannot hide.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// The SQLSTATE of an ErrorResponse or NoticeResponse.
    pub fn code(&self) -> Option<String> {
        self.field(b'C')
    }

    /// A field of an ErrorResponse or NoticeResponse.
    pub fn field(&self, field: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&f, after)) = rest.split_first() {
            if f == 0 {
                return None;
            }
            let nul = after.iter().position(|&b| b == 0)?;
            if f == field {
                return Some(String::from_utf8_lossy(&after[..nul]).into_owned());
            }
            rest = &after[nul + 1..];
        }
        None
    }

    /// `tag` plus, for errors, the SQLSTATE: a stable description for comparing sequences.
    pub fn summary(&self) -> String {
        match self.tag {
            b'E' | b'N' => format!("{}:{}", self.tag as char, self.code().unwrap_or_default()),
            b'C' => format!(
                "C:{}",
                String::from_utf8_lossy(&self.body[..self.body.len() - 1])
            ),
            b'Z' => format!("Z:{}", self.body[0] as char),
            t => (t as char).to_string(),
        }
    }
}

/// A connection speaking raw protocol.
#[derive(Debug)]
pub struct Wire {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Wire {
    /// Opens a TCP connection.
    pub async fn connect(addr: &str) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    /// Opens a session as a `trust` role and reads up to the first ReadyForQuery.
    pub async fn startup(addr: &str, user: &str, database: &str) -> (Self, Vec<Msg>) {
        Self::startup_with(addr, &[("user", user), ("database", database)]).await
    }

    /// Opens a session (a `trust` role) with these startup parameters.
    pub async fn startup_with(addr: &str, params: &[(&str, &str)]) -> (Self, Vec<Msg>) {
        let mut w = Self::connect(addr).await;
        w.send(&startup(params)).await;
        let msgs = w.until_ready().await;
        assert!(
            msgs.iter().all(|m| m.tag != b'E'),
            "startup failed: {:?}",
            msgs.iter().map(|m| m.field(b'M')).collect::<Vec<_>>()
        );
        (w, msgs)
    }

    /// Writes bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads one message, `None` at end of stream (or after 10 s of silence).
    pub async fn recv(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Some(Msg { tag, body });
                }
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Reads messages up to and including the next ReadyForQuery (or the end of stream).
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.recv().await {
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                break;
            }
        }
        out
    }

    /// Reads raw bytes until end of stream (or 10 s of silence).
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = self.buf.split().to_vec();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut out)).await;
        out
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// StartupMessage, protocol 3.0.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend(cstr(k));
        body.extend(cstr(v));
    }
    body.push(0);
    let mut v = (body.len() as u32 + 4).to_be_bytes().to_vec();
    v.extend(body);
    v
}

/// Query.
pub fn query(sql: &str) -> Vec<u8> {
    frame(b'Q', &cstr(sql))
}

/// Parse with no parameter types.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = cstr(name);
    body.extend(cstr(sql));
    body.extend_from_slice(&0u16.to_be_bytes());
    frame(b'P', &body)
}

/// Bind with no parameters, text results.
pub fn bind(portal: &str, statement: &str) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(cstr(statement));
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    frame(b'B', &body)
}

/// Bind with text parameters, text results.
pub fn bind_text(portal: &str, statement: &str, params: &[&str]) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(cstr(statement));
    body.extend_from_slice(&0u16.to_be_bytes());
    body.extend_from_slice(&(params.len() as u16).to_be_bytes());
    for p in params {
        body.extend_from_slice(&(p.len() as u32).to_be_bytes());
        body.extend_from_slice(p.as_bytes());
    }
    body.extend_from_slice(&0u16.to_be_bytes());
    frame(b'B', &body)
}

/// Describe a portal.
pub fn describe_portal(portal: &str) -> Vec<u8> {
    let mut body = vec![b'P'];
    body.extend(cstr(portal));
    frame(b'D', &body)
}

/// Execute with no row limit.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend_from_slice(&0u32.to_be_bytes());
    frame(b'E', &body)
}

/// Sync.
pub fn sync() -> Vec<u8> {
    frame(b'S', &[])
}

/// Flush.
pub fn flush() -> Vec<u8> {
    frame(b'H', &[])
}

/// Terminate.
pub fn terminate() -> Vec<u8> {
    frame(b'X', &[])
}

/// Any frame, for malformed-input tests.
pub fn raw_frame(tag: u8, body: &[u8]) -> Vec<u8> {
    frame(tag, body)
}
