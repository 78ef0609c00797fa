//! The protocol edge: what the HTTP libraries refuse before the proxy sees a request, answered
//! so kubectl can read it and never retries it.
//!
//! kube-apiserver takes 1 MiB of request line and headers (Go's `MaxHeaderBytes`) on both
//! protocols. The proxy takes the same, except for one limit of the libraries it is built on:
//! the `http` crate's URI type holds at most [`MAX_URI_LEN`] bytes (its query offset is a
//! `u16`), so a longer request target (a label selector of thousands of values) cannot be served.
//!
//! - HTTP/1.1: hyper answers a request head it cannot take with a bare 400, 414 or 431 and closes
//!   the connection. [`H1Answers`] sits under hyper on the connection and replaces that bare
//!   answer with a Kubernetes `Status` naming the limit.
//! - HTTP/2: h2 resets a stream whose `:path` the URI type cannot hold with `PROTOCOL_ERROR`,
//!   which Go's HTTP/2 client (client-go, kubectl) treats as safe to retry on a new connection,
//!   without end. [`H2PathGuard`] reads the client's frames before h2 does and, for a `:path`
//!   longer than the limit, hands h2 a short marker path instead ([`URI_TOO_LONG_PATH`] and the
//!   length); the handler answers that with a 414 `Status`. Nothing else in the stream changes:
//!   every other frame, and every other header block, passes through byte for byte. HPACK lets a
//!   client name `:path` by an index into its dynamic table, so the guard keeps that table as
//!   h2's decoder holds it (`edge/hpack.rs`).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

use self::hpack::{Scan, Table};

pub use crate::proxy::size::{
    MAX_H1_HEADERS, MAX_HEAD_BYTES, MAX_URI_LEN, URI_TOO_LONG_PATH, uri_too_long, uri_too_long_message,
};

/// What the bare HTTP/1.1 answers that [`H1Answers`] replaces mean.
fn h1_message(code: u16) -> (&'static str, String) {
    match code {
        414 => ("RequestURITooLong", uri_too_long_message(None)),
        431 => (
            "RequestHeaderFieldsTooLarge",
            format!(
                "the request line and headers are larger than {MAX_HEAD_BYTES} bytes (1 MiB, as \
                 kube-apiserver takes), or have more than {MAX_H1_HEADERS} header fields"
            ),
        ),
        _ => (
            "BadRequest",
            "the request is not valid HTTP/1.1 (request line or header fields)".to_string(),
        ),
    }
}

/// A whole HTTP/1.1 response carrying a Kubernetes `Status`, closing the connection.
fn h1_status_response(code: u16) -> Vec<u8> {
    let (reason, message) = h1_message(code);
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
    .to_string();
    let phrase = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("Bad Request");
    format!(
        "HTTP/1.1 {code} {phrase}\r\ncontent-type: application/json\r\ncache-control: no-cache, private\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status of a bare answer hyper writes on its own for a request head it could not take:
/// `HTTP/1.1 400|414|431`, `content-length: 0` and no `content-type` (every answer of the
/// proxy, and of kube-apiserver, carries a body).
fn bare_error(buf: &[u8]) -> Option<u16> {
    let code = match buf.get(..13)? {
        b"HTTP/1.1 400 " => 400,
        b"HTTP/1.1 414 " => 414,
        b"HTTP/1.1 431 " => 431,
        _ => return None,
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = buf[..end + 4].to_ascii_lowercase();
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    (end + 4 == buf.len() && has(b"\r\ncontent-length: 0\r\n") && !has(b"\r\ncontent-type:")).then_some(code)
}

/// Called once per connection when a bare answer was replaced, with its status.
pub type OnRefusal = Box<dyn FnOnce(u16) + Send + Sync>;

/// Wraps the connection under hyper's HTTP/1.1 server: replaces hyper's bare answer to a head it
/// could not parse with a `Status`. Reads pass through untouched.
pub struct H1Answers<IO> {
    io: IO,
    /// The replacement being written, and how much of it is out; then the length of hyper's
    /// buffer to report as written.
    replacing: Option<(Vec<u8>, usize, usize)>,
    on_refusal: Option<OnRefusal>,
    /// A `101 Switching Protocols` went out: what follows is the upgraded stream's own bytes
    /// (exec, port-forward), never hyper's, and passes untouched whatever it looks like.
    upgraded: bool,
}

impl<IO> H1Answers<IO> {
    pub fn new(io: IO, on_refusal: OnRefusal) -> Self {
        H1Answers {
            io,
            replacing: None,
            on_refusal: Some(on_refusal),
            upgraded: false,
        }
    }

    /// Notes a `101` going out; true once the connection carries an upgraded stream.
    fn note_upgrade(&mut self, buf: &[u8]) -> bool {
        self.upgraded |= buf.starts_with(b"HTTP/1.1 101 ");
        self.upgraded
    }

    /// The status of a bare answer of hyper's that `buf` (a whole write) is, to be replaced.
    fn refusal_in(&mut self, buf: &[u8]) -> Option<u16> {
        if self.note_upgrade(buf) {
            return None;
        }
        bare_error(buf)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for H1Answers<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> H1Answers<IO> {
    /// Writes what is left of the replacement; ready with the length hyper asked to write.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, done, _)) = &mut self.replacing
            && *done < bytes.len()
        {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(self.replacing.as_ref().map_or(0, |r| r.2)))
    }

    fn start_replacing(&mut self, code: u16, len: usize) {
        self.replacing = Some((h1_status_response(code), 0, len));
        if let Some(report) = self.on_refusal.take() {
            report(code);
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for H1Answers<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match this.refusal_in(buf) {
                Some(code) => this.start_replacing(code, buf.len()),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        let n = ready!(this.poll_replacement(cx))?;
        // After the replacement the connection is done: hyper closes it.
        Poll::Ready(Ok(if n > 0 { n } else { buf.len() }))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map(|b| &b[..])
                .unwrap_or_default();
            let only = bufs.iter().filter(|b| !b.is_empty()).count() == 1;
            // Several buffers are a head with its body, never one of hyper's bare answers.
            let found = if only {
                this.refusal_in(first)
            } else {
                this.note_upgrade(first);
                None
            };
            match found {
                Some(code) => {
                    let len = bufs.iter().map(|b| b.len()).sum();
                    this.start_replacing(code, len)
                }
                None => return Pin::new(&mut this.io).poll_write_vectored(cx, bufs),
            }
        }
        let n = ready!(this.poll_replacement(cx))?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

// ---- HTTP/2

const PREFACE_LEN: usize = 24;
/// What one read of the connection may bring in at most.
const READ_ROOM: usize = 16 * 1024;
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size h2 accepts unless told otherwise (SETTINGS_MAX_FRAME_SIZE's default).
const MAX_FRAME: usize = 16_384;
/// A header block buffered beyond this is passed on as it is (h2 refuses it on its own: it is
/// larger than the header list the proxy accepts, even with HPACK's compression).
const MAX_BLOCK: usize = 2 * MAX_HEAD_BYTES;

enum H2State {
    /// The client's connection preface, passed on.
    Preface(usize),
    /// Between frames.
    Frame,
    /// Inside a frame's payload that is passed on as it is.
    Pass(usize),
    /// Gathering a header block: the frames as they came, and the block's fragments.
    Block {
        stream: u32,
        end_stream: bool,
        /// HEADERS or PUSH_PROMISE: the frame that started the block.
        first: u8,
        raw: BytesMut,
        fragments: BytesMut,
        /// Inside a frame's payload (false: between the frames of the block).
        reading: bool,
        /// Payload still to read of the frame being gathered, its length and flags.
        need: usize,
        len: usize,
        flags: u8,
        kind: u8,
    },
}

/// Reads the client's HTTP/2 frames before h2 does; see the module documentation.
pub struct H2PathGuard<IO> {
    io: IO,
    state: H2State,
    /// Read from the connection, not yet looked at.
    input: BytesMut,
    /// Looked at, ready for h2.
    output: BytesMut,
    eof: bool,
    /// The client's HPACK dynamic table, as h2's decoder holds it.
    table: Table,
    /// The client sent what h2 ends the connection on: the table no longer counts, and
    /// everything after passes as it is.
    lost: bool,
}

impl<IO> H2PathGuard<IO> {
    /// The handler records the refusal of the marker path like any other.
    pub fn new(io: IO) -> Self {
        H2PathGuard {
            io,
            state: H2State::Preface(PREFACE_LEN),
            input: BytesMut::new(),
            output: BytesMut::new(),
            eof: false,
            table: Table::default(),
            lost: false,
        }
    }

    /// Moves what can be decided from `input` to `output`.
    fn process(&mut self) {
        loop {
            match &mut self.state {
                H2State::Preface(left) | H2State::Pass(left) => {
                    let n = (*left).min(self.input.len());
                    if n == 0 && *left > 0 {
                        return;
                    }
                    self.output.extend_from_slice(&self.input.split_to(n));
                    *left -= n;
                    if *left == 0 {
                        self.state = H2State::Frame;
                    }
                }
                H2State::Frame => {
                    let Some(h) = self.input.get(..FRAME_HEADER) else {
                        return;
                    };
                    let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    // h2 decodes a client's PUSH_PROMISE too (then refuses it, or ignores it
                    // after a GOAWAY): its block changes the table as well.
                    let block = kind == HEADERS || kind == PUSH_PROMISE;
                    // A larger frame is h2's connection error (FRAME_SIZE_ERROR).
                    self.lost |= block && len > MAX_FRAME;
                    if block && !self.lost {
                        let mut raw = BytesMut::with_capacity(FRAME_HEADER + len);
                        raw.extend_from_slice(&self.input.split_to(FRAME_HEADER));
                        self.state = H2State::Block {
                            stream,
                            end_stream: flags & END_STREAM != 0,
                            first: kind,
                            raw,
                            fragments: BytesMut::new(),
                            reading: true,
                            need: len,
                            len,
                            flags,
                            kind,
                        };
                    } else {
                        self.output.extend_from_slice(&self.input.split_to(FRAME_HEADER));
                        self.state = H2State::Pass(len);
                    }
                }
                H2State::Block {
                    stream,
                    end_stream,
                    first,
                    raw,
                    fragments,
                    reading,
                    need,
                    len,
                    flags,
                    kind,
                } => {
                    if !*reading {
                        // Between the frames of a block: only a CONTINUATION of the same stream
                        // may come (anything else is h2's to refuse).
                        let Some(h) = self.input.get(..FRAME_HEADER) else {
                            return;
                        };
                        let next = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                        let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                        if h[3] != CONTINUATION || id != *stream || next > MAX_FRAME {
                            self.give_up();
                            continue;
                        }
                        (*reading, *flags, *kind, *need, *len) = (true, h[4], CONTINUATION, next, next);
                        raw.extend_from_slice(&self.input.split_to(FRAME_HEADER));
                    }
                    let n = (*need).min(self.input.len());
                    raw.extend_from_slice(&self.input.split_to(n));
                    *need -= n;
                    if *need > 0 {
                        return;
                    }
                    // The frame is whole: its fragment, without padding and priority.
                    *reading = false;
                    match fragment(&raw[raw.len() - *len..], *flags, *kind, *stream) {
                        Fragment::Of(f) => fragments.extend_from_slice(f),
                        Fragment::SelfDependent if *flags & END_HEADERS != 0 => {
                            // h2 resets the stream without decoding the block: the table stays.
                            self.output.extend_from_slice(raw);
                            self.state = H2State::Frame;
                            continue;
                        }
                        Fragment::SelfDependent | Fragment::Invalid => {
                            self.give_up();
                            continue;
                        }
                    }
                    if *flags & END_HEADERS != 0 {
                        let (stream, end_stream, first) = (*stream, *end_stream, *first);
                        let raw = std::mem::take(raw);
                        let fragments = std::mem::take(fragments);
                        self.state = H2State::Frame;
                        self.finish_block(stream, end_stream, first, raw, &fragments);
                    } else if raw.len() > MAX_BLOCK {
                        self.give_up();
                    }
                }
            }
        }
    }

    /// Passes a block gathered so far on as it came, and goes on frame by frame: h2 ends the
    /// connection on what made the guard give up.
    fn give_up(&mut self) {
        if let H2State::Block { raw, need, .. } = &mut self.state {
            self.output.extend_from_slice(raw);
            let need = *need;
            self.state = if need > 0 {
                H2State::Pass(need)
            } else {
                H2State::Frame
            };
            self.lost = true;
        }
    }

    fn finish_block(&mut self, stream: u32, end_stream: bool, first: u8, raw: BytesMut, block: &[u8]) {
        match self.table.scan(block) {
            // A PUSH_PROMISE only counts for the table: h2 serves no request from it.
            Scan::Rewrite(len, new_block) if first == HEADERS => {
                tracing::debug!(stream, len, "HTTP/2 request path longer than the URI type holds");
                write_header_frames(&mut self.output, stream, end_stream, &new_block);
            }
            Scan::Invalid => {
                self.lost = true;
                self.output.extend_from_slice(&raw);
            }
            Scan::Rewrite(..) | Scan::Keep => self.output.extend_from_slice(&raw),
        }
    }
}

enum Fragment<'a> {
    Of(&'a [u8]),
    /// A HEADERS frame whose stream depends on itself: h2 resets the stream without decoding
    /// the block (a stream error, checked before the padding).
    SelfDependent,
    /// A frame h2 ends the connection on.
    Invalid,
}

/// The header block fragment of a HEADERS, PUSH_PROMISE or CONTINUATION payload, read as h2
/// reads it.
fn fragment(payload: &[u8], flags: u8, kind: u8, stream: u32) -> Fragment<'_> {
    if kind == CONTINUATION {
        return Fragment::Of(payload);
    }
    let mut p = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        let Some((&n, rest)) = p.split_first() else {
            return Fragment::Invalid;
        };
        (pad, p) = (usize::from(n), rest);
    }
    if kind == PUSH_PROMISE {
        // The promised stream's id; h2 wants at least one octet after it.
        if p.len() < 5 {
            return Fragment::Invalid;
        }
        p = &p[4..];
    } else if flags & PRIORITY != 0 {
        let Some((dep, rest)) = p.split_first_chunk::<5>() else {
            return Fragment::Invalid;
        };
        if u32::from_be_bytes([dep[0], dep[1], dep[2], dep[3]]) & 0x7fff_ffff == stream {
            return Fragment::SelfDependent;
        }
        p = rest;
    }
    match p.len().checked_sub(pad) {
        Some(len) => Fragment::Of(&p[..len]),
        None => Fragment::Invalid,
    }
}

/// HEADERS (then CONTINUATION) frames carrying `block`, at most [`MAX_FRAME`] each.
fn write_header_frames(out: &mut BytesMut, stream: u32, end_stream: bool, block: &[u8]) {
    let chunks: Vec<&[u8]> = if block.is_empty() {
        vec![block]
    } else {
        block.chunks(MAX_FRAME).collect()
    };
    let last = chunks.len() - 1;
    for (n, chunk) in chunks.into_iter().enumerate() {
        let kind = if n == 0 { HEADERS } else { CONTINUATION };
        let mut flags = if n == last { END_HEADERS } else { 0 };
        if n == 0 && end_stream {
            flags |= END_STREAM;
        }
        let len = chunk.len();
        out.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
        out.put_u32(stream);
        out.put_slice(chunk);
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for H2PathGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            // A payload passed on as it is (DATA, most of all) goes straight into h2's buffer.
            if let H2State::Pass(left) = &mut this.state
                && *left > 0
                && this.input.is_empty()
                && !this.eof
                && buf.remaining() > 0
            {
                let dst = buf.initialize_unfilled_to((*left).min(buf.remaining()));
                let mut rb = ReadBuf::new(dst);
                ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
                let n = rb.filled().len();
                if n == 0 {
                    this.eof = true;
                    continue;
                }
                buf.advance(n);
                *left -= n;
                if *left == 0 {
                    this.state = H2State::Frame;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // A block cut short by the end of the connection goes on as it is.
                this.give_up();
                if !this.input.is_empty() {
                    let rest = this.input.split();
                    this.output.extend_from_slice(&rest);
                    continue;
                }
                if !this.output.is_empty() {
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            // Straight into the input's spare room: a zeroed stack buffer cost a 16 KiB memset
            // per read, more than the rest of the guard.
            if this.input.capacity() - this.input.len() < READ_ROOM / 4 {
                this.input.reserve(READ_ROOM);
            }
            if ready!(poll_read_buf(Pin::new(&mut this.io), cx, &mut this.input))? == 0 {
                this.eof = true;
            } else {
                this.process();
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for H2PathGuard<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What h2 would read after the guard, for bytes a client sent (the connection preface
/// included): the guard run to the end over a byte slice, read `chunk` bytes at a time. For the
/// fuzz target and tests; a slice never makes a read wait.
pub fn guarded(input: &[u8], chunk: usize) -> Vec<u8> {
    let mut guard = H2PathGuard::new(input);
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut guard).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => out.extend_from_slice(rb.filled()),
            _ => return out,
        }
    }
}

mod hpack;
mod huffman;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod scenario;
#[cfg(test)]
mod tests;
