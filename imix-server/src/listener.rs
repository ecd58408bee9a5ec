//! The JSON error shape for answers the HTTP/1 parser gives before the application sees a
//! request.
//!
//! hyper answers a request line or header block it cannot take on its own, with an empty
//! body, before any endpoint runs: 414 for a URI over 65,534 bytes, 431 for more than 100
//! headers or a head larger than its read buffer (about 400 KiB), 400 for a head that is not
//! HTTP. poem offers no hook for these (its server builder does not expose hyper's HTTP/1
//! options), so [`ShapedAcceptor`] wraps each connection and replaces exactly these answers
//! (a 400, 414 or 431 head with `content-length: 0` and no body, which the application
//! never writes: its errors always carry a JSON body) with the same status and a JSON error
//! body, `Connection: close` included. HTTP/2 connections report such errors as HTTP/2
//! stream errors; they have no body to shape.
//!
//! The same wrapper bounds how long an HTTP/1 connection may take to send a request head
//! ([`HEAD_TIMEOUT`], counted from the accept and again from the server's last write): a
//! client that sends half a head (or nothing) and waits is disconnected, so half-open
//! connections cannot pile up (slowloris). Body reads have their own progress timeout, see
//! [`crate::body::BODY_PROGRESS_TIMEOUT`].

use std::{
    future::Future,
    io::{IoSlice, Result as IoResult},
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use poem::{
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// How long an HTTP/1 connection may take to send a complete request head, counted from
/// the accept, and from the first byte of each later head on a kept-alive connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a kept-alive HTTP/1 connection may sit idle after an answer before the next
/// request starts. Longer than [`HEAD_TIMEOUT`]: a client's connection pool reuses idle
/// connections, and closing them quickly would race with that reuse; a request that has
/// started is still held to [`HEAD_TIMEOUT`].
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// The start of the HTTP/2 connection preface (`PRI * HTTP/2.0`).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// An [`Acceptor`] whose connections answer the parser's own errors in the JSON shape and
/// are closed when a request head does not arrive within [`HEAD_TIMEOUT`].
pub struct ShapedAcceptor<A>(pub A);

impl<A: Acceptor> Acceptor for ShapedAcceptor<A> {
    type Io = ShapedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> IoResult<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let (io, local, remote, scheme) = self.0.accept().await?;
        Ok((
            ShapedIo {
                inner: io,
                pending: None,
                head_deadline: Some(Box::pin(tokio::time::sleep(HEAD_TIMEOUT))),
                idle: false,
                tail: [0; 3],
                first_bytes: Vec::new(),
            },
            local,
            remote,
            scheme,
        ))
    }
}

/// A connection of [`ShapedAcceptor`].
pub struct ShapedIo<T> {
    inner: T,
    /// A replacement being written: its bytes, how many are written, and the length of the
    /// write it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
    /// While a request head is awaited: when the connection is closed if it has not come.
    head_deadline: Option<Pin<Box<Sleep>>>,
    /// Whether the connection is between requests (an answer was written and nothing of the
    /// next request has arrived): the deadline is then [`KEEP_ALIVE_TIMEOUT`] away.
    idle: bool,
    /// The last 3 bytes read, to find a head's end (`\r\n\r\n`) across reads.
    tail: [u8; 3],
    /// The first bytes of the connection, until it is known whether it is HTTP/2.
    first_bytes: Vec<u8>,
}

impl<T> ShapedIo<T> {
    /// Takes note of `data`, just read: a head's end disarms the head deadline, and an
    /// HTTP/2 connection is exempt from it (its frames are binary).
    fn saw(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.first_bytes.len() < H2_PREFACE.len() {
            let want = H2_PREFACE.len() - self.first_bytes.len();
            self.first_bytes
                .extend_from_slice(&data[..want.min(data.len())]);
            if self.first_bytes == H2_PREFACE {
                self.head_deadline = None;
                return;
            }
        } else if self.first_bytes == H2_PREFACE {
            return;
        }
        if self.idle {
            // The next request has started: its head must now arrive in time.
            self.idle = false;
            let at = Instant::now() + HEAD_TIMEOUT;
            match self.head_deadline.as_mut() {
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.head_deadline = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        let mut window = self.tail.to_vec();
        window.extend_from_slice(data);
        if window.windows(4).any(|w| w == b"\r\n\r\n") {
            self.head_deadline = None;
        }
        let n = window.len();
        self.tail.copy_from_slice(&window[n - 3..]);
    }

    /// The server wrote (an answer): the connection is idle until the next request starts,
    /// for at most [`KEEP_ALIVE_TIMEOUT`]. An interim `100 Continue` does not count (the
    /// client is sending a body).
    fn wrote(&mut self, data: &[u8]) {
        if self.first_bytes == H2_PREFACE || data.starts_with(b"HTTP/1.1 100 ") {
            return;
        }
        self.idle = true;
        let at = Instant::now() + KEEP_ALIVE_TIMEOUT;
        match self.head_deadline.as_mut() {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.head_deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.tail = [0; 3];
    }
}

/// The JSON answer standing for `buf`, when `buf` is exactly an empty-bodied 400, 414 or
/// 431 head written by the HTTP/1 parser.
fn replacement_for(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?;
    let rest = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?;
    let (code, message) = match rest.get(..3)? {
        "400" => (
            "malformed_request",
            "the request is not valid HTTP/1.1 (request line or headers)",
        ),
        "414" => (
            "uri_too_long",
            "the request URI is longer than 65,534 bytes",
        ),
        "431" => (
            "header_fields_too_large",
            "the request headers are too large (at most 100 headers, about 400 KiB in all)",
        ),
        _ => return None,
    };
    let end = head.find("\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let lines: Vec<&str> = head[..end].split("\r\n").collect();
    let (status_line, headers) = lines.split_first()?;
    let is_empty = headers.iter().any(|h| {
        h.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("content-length") && v.trim() == "0"
        })
    });
    if !is_empty {
        return None;
    }
    let body =
        serde_json::json!({"error": {"code": code, "message": message, "details": {}}}).to_string();
    let mut out = format!("{status_line}\r\n");
    for h in headers {
        let name = h.split_once(':').map_or("", |(k, _)| k.trim());
        if !["content-length", "content-type", "connection"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "content-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for ShapedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<IoResult<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Waiting for the client: give up once the head deadline has passed.
                if let Some(deadline) = this.head_deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no complete request head in time",
                        )));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ShapedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<IoResult<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match replacement_for(buf) {
                Some(replacement) => this.pending = Some((replacement, 0, buf.len())),
                None => {
                    let written = ready!(Pin::new(&mut this.inner).poll_write(cx, buf));
                    if matches!(written, Ok(n) if n > 0) {
                        this.wrote(buf);
                    }
                    return Poll::Ready(written);
                }
            }
        }
        while let Some((bytes, written, stands_for)) = this.pending.as_mut() {
            if *written >= bytes.len() {
                let n = *stands_for;
                this.pending = None;
                return Poll::Ready(Ok(n));
            }
            match ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..])) {
                Ok(0) => {
                    this.pending = None;
                    return Poll::Ready(Ok(0));
                }
                Ok(n) => *written += n,
                Err(e) => {
                    this.pending = None;
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(0))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<IoResult<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let first = bufs.iter().find(|b| !b.is_empty());
        let whole_head = first.filter(|b| b.len() == total && replacement_for(b).is_some());
        if self.pending.is_some() || whole_head.is_some() {
            let buf: &[u8] = first.map_or(&[], |b| b);
            return self.poll_write(cx, buf);
        }
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs));
        if matches!(written, Ok(n) if n > 0) {
            this.wrote(first.map_or(&[], |b| b));
        }
        Poll::Ready(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoResult<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_empty_parser_answers_are_replaced() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let shaped = String::from_utf8(replacement_for(bare).unwrap()).unwrap();
        assert!(shaped.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(shaped.contains("date: x\r\n") && shaped.contains("connection: close\r\n"));
        let (_, body) = shaped.split_once("\r\n\r\n").unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "header_fields_too_large");
        assert!(shaped.contains(&format!("content-length: {}\r\n", body.len())));

        // The application's own answers (a body, or another status) pass untouched.
        let with_body = b"HTTP/1.1 431 X\r\ncontent-length: 2\r\n\r\n{}";
        assert!(replacement_for(with_body).is_none());
        let not_empty = b"HTTP/1.1 414 X\r\ncontent-length: 12\r\n\r\n";
        assert!(replacement_for(not_empty).is_none());
        assert!(replacement_for(b"HTTP/1.1 404 X\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement_for(b"\x00\xff").is_none());
    }

    fn deadline_in<T>(io: &ShapedIo<T>) -> Option<Duration> {
        io.head_deadline
            .as_ref()
            .map(|d| d.deadline().saturating_duration_since(Instant::now()))
    }

    #[tokio::test]
    async fn idle_keep_alive_connections_get_longer_than_a_started_head() {
        let (io, _peer) = tokio::io::duplex(64);
        let mut io = ShapedIo {
            inner: io,
            pending: None,
            head_deadline: Some(Box::pin(tokio::time::sleep(HEAD_TIMEOUT))),
            idle: false,
            tail: [0; 3],
            first_bytes: Vec::new(),
        };
        // A fresh connection has HEAD_TIMEOUT for its first head; its end disarms it.
        assert!(deadline_in(&io).is_some_and(|d| d <= HEAD_TIMEOUT));
        io.saw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(deadline_in(&io).is_none());
        // After the answer the connection may idle for KEEP_ALIVE_TIMEOUT ...
        io.wrote(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(deadline_in(&io).is_some_and(|d| d > HEAD_TIMEOUT && d <= KEEP_ALIVE_TIMEOUT));
        // ... but once the next request starts, its head is due within HEAD_TIMEOUT.
        io.saw(b"GET /hea");
        assert!(deadline_in(&io).is_some_and(|d| d <= HEAD_TIMEOUT));
        io.saw(b"lth HTTP/1.1\r\n\r\n");
        assert!(deadline_in(&io).is_none());
    }
}
