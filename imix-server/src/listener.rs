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

use std::{
    io::{IoSlice, Result as IoResult},
    pin::Pin,
    task::{ready, Context, Poll},
};

use poem::{
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// An [`Acceptor`] whose connections answer the parser's own errors in the JSON shape.
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
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ShapedIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<IoResult<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match replacement_for(buf) {
                Some(replacement) => this.pending = Some((replacement, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
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
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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
}
