//! A raw HTTP/2 client: frames written by hand, for what no well-behaved client sends (a
//! `:path` the `http` crate cannot hold, floods of resets, CONTINUATIONs, SETTINGS, PINGs).
//! Header blocks use HPACK literals without indexing and without Huffman.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub fn push_int(out: &mut Vec<u8>, v: usize, n: u32, high: u8) {
    let mask = (1usize << n) - 1;
    if v < mask {
        out.push(high | v as u8);
        return;
    }
    out.push(high | mask as u8);
    let mut rest = v - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A GET header block for `path` with a bearer token.
pub fn request_block(path: &str, token: &str) -> Vec<u8> {
    request_block_to("127.0.0.1", path, token)
}

/// A GET header block for `path` at `authority` with a bearer token.
pub fn request_block_to(authority: &str, path: &str, token: &str) -> Vec<u8> {
    let mut b = vec![0x82, 0x87, 0x04];
    push_int(&mut b, path.len(), 7, 0);
    b.extend_from_slice(path.as_bytes());
    b.push(0x01);
    push_int(&mut b, authority.len(), 7, 0);
    b.extend_from_slice(authority.as_bytes());
    // authorization: static index 23, 4-bit prefix.
    push_int(&mut b, 23, 4, 0);
    let v = format!("Bearer {token}");
    push_int(&mut b, v.len(), 7, 0);
    b.extend_from_slice(v.as_bytes());
    b
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HEADERS (END_STREAM) and CONTINUATIONs carrying `block`, 16 KiB per frame.
pub fn headers(stream: u32, block: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = block.chunks(16_384).collect();
    let mut out = Vec::new();
    for (n, c) in chunks.iter().enumerate() {
        let end_headers = if n + 1 == chunks.len() { END_HEADERS } else { 0 };
        let (kind, flags) = if n == 0 {
            (HEADERS, END_STREAM | end_headers)
        } else {
            (CONTINUATION, end_headers)
        };
        out.extend(frame(kind, flags, stream, c));
    }
    out
}

/// What came back on one stream.
#[derive(Default, Debug)]
pub struct StreamSeen {
    pub headers: bool,
    pub data: Vec<u8>,
    pub ended: bool,
    pub reset: Option<u32>,
}

/// A connection's frames as they arrive.
pub struct Conn {
    pub tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
    pub streams: HashMap<u32, StreamSeen>,
    pub goaway: Option<u32>,
    pub closed: bool,
}

impl Conn {
    /// Connects (ALPN h2) and sends the preface and an empty SETTINGS.
    pub async fn open(addr: std::net::SocketAddr, tls: std::sync::Arc<rustls::ClientConfig>) -> Conn {
        let mut tls = super::client::tls_connect(addr, tls).await.expect("connect");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        tls.write_all(&hello).await.expect("preface");
        Conn {
            tls,
            buf: Vec::new(),
            streams: HashMap::new(),
            goaway: None,
            closed: false,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes).await
    }

    /// Reads frames until `done` holds, the connection ends, or `within` passes (false then).
    pub async fn read_until(&mut self, within: Duration, mut done: impl FnMut(&Conn) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            self.parse().await;
            if done(self) {
                return true;
            }
            if self.closed {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut chunk = [0u8; 16_384];
            match tokio::time::timeout(left, self.tls.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return false,
            }
        }
    }

    async fn parse(&mut self) {
        while self.buf.len() >= 9 {
            let b = &self.buf;
            let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
            if b.len() < 9 + len {
                return;
            }
            let (kind, flags) = (b[3], b[4]);
            let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff;
            let payload = b[9..9 + len].to_vec();
            self.buf.drain(..9 + len);
            match kind {
                DATA => {
                    let s = self.streams.entry(stream).or_default();
                    s.data.extend_from_slice(&payload);
                    s.ended |= flags & END_STREAM != 0;
                }
                HEADERS => {
                    let s = self.streams.entry(stream).or_default();
                    s.headers = true;
                    s.ended |= flags & END_STREAM != 0;
                }
                RST_STREAM if payload.len() == 4 => {
                    self.streams.entry(stream).or_default().reset = Some(u32::from_be_bytes([
                        payload[0], payload[1], payload[2], payload[3],
                    ]));
                }
                SETTINGS if flags & 0x1 == 0 => {
                    let _ = self.tls.write_all(&frame(SETTINGS, 0x1, 0, &[])).await;
                }
                GOAWAY if payload.len() >= 8 => {
                    self.goaway = Some(u32::from_be_bytes([
                        payload[4], payload[5], payload[6], payload[7],
                    ]));
                }
                _ => {}
            }
        }
    }
}
