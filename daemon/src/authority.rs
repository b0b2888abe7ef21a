//! gRPC clients on a unix socket send an `:authority` the HTTP/2 server
//! refuses: grpc-core (Python's grpcio, C++, Ruby, ...) sends the socket's
//! path percent-encoded (`%2Frun%2Fisoexec%2Fisoexecd.sock`), grpc-java the
//! raw path. hyper's h2 resets every such stream (PROTOCOL_ERROR, "malformed
//! authority") before tonic sees it, and has no setting to allow it.
//!
//! So each connection passes through a [`Rewriter`] on its way in: header
//! blocks are decoded (HPACK, the client's compression state kept), an
//! authority that is not a valid `host[:port]` becomes `localhost` (what
//! grpc-go and tonic's own client send on a unix socket), and the block is
//! sent on as literals (no dynamic table, so the server's decoder needs no
//! state of ours). Every other frame, and all of the server's, pass as they
//! are.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer takes (SETTINGS_MAX_FRAME_SIZE's
/// least value): re-encoded blocks are cut to it.
const MAX_FRAME: usize = 16384;
/// The largest frame read from a client (the server's limit is enforced by
/// the server; this only bounds our buffer).
const MAX_READ: usize = 1 << 24;
/// The largest header block taken (HEADERS and its CONTINUATIONs).
const MAX_BLOCK: usize = 1 << 20;

/// One connection's client-to-server header rewriting. Pure: frames in,
/// bytes out.
pub struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
    /// A header block waiting for its CONTINUATION frames: (stream, the
    /// HEADERS frame's flags, the block so far).
    pending: Option<(u32, u8, Vec<u8>)>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Rewriter {
    pub fn new() -> Self {
        Rewriter {
            decoder: loona_hpack::Decoder::new(),
            pending: None,
        }
    }

    /// The bytes to send on for one frame from the client (`typ`, `flags`,
    /// `stream` from its header, then its payload).
    pub fn frame(
        &mut self,
        typ: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>, String> {
        match typ {
            HEADERS => {
                let mut p = payload;
                let mut pad = 0usize;
                if flags & PADDED != 0 {
                    let (&n, rest) = p.split_first().ok_or("HEADERS: no pad length")?;
                    pad = n.into();
                    p = rest;
                }
                if flags & PRIORITY != 0 {
                    p = p.get(5..).ok_or("HEADERS: short priority")?;
                }
                let block = p
                    .get(
                        ..p.len()
                            .checked_sub(pad)
                            .ok_or("HEADERS: padding longer than the frame")?,
                    )
                    .ok_or("HEADERS: bad padding")?;
                if flags & END_HEADERS != 0 {
                    return self.finish(stream, flags, block);
                }
                self.pending = Some((stream, flags, block.to_vec()));
                Ok(Vec::new())
            }
            CONTINUATION if self.pending.as_ref().is_some_and(|(s, _, _)| *s == stream) => {
                let Some((s, f, mut block)) = self.pending.take() else {
                    return Ok(Vec::new());
                };
                block.extend_from_slice(payload);
                if block.len() > MAX_BLOCK {
                    return Err(format!("a header block over {MAX_BLOCK} bytes"));
                }
                if flags & END_HEADERS != 0 {
                    return self.finish(s, f, &block);
                }
                self.pending = Some((s, f, block));
                Ok(Vec::new())
            }
            _ => Ok(frame_bytes(typ, flags, stream, payload)),
        }
    }

    /// A whole header block, decoded, its authority fixed, re-encoded and
    /// framed (HEADERS, then CONTINUATIONs if it is long).
    fn finish(&mut self, stream: u32, flags: u8, block: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut err = None;
        self.decoder
            .decode_with_cb(block, |name, value| {
                let value = if &name[..] == b":authority" && !valid_authority(&value) {
                    &b"localhost"[..]
                } else {
                    &value[..]
                };
                if name.len() > MAX_BLOCK || value.len() > MAX_BLOCK {
                    err = Some("a header over the block limit");
                }
                literal(&mut out, &name, value);
            })
            .map_err(|e| format!("HPACK: {e:?}"))?;
        if let Some(e) = err {
            return Err(e.into());
        }
        let mut frames = Vec::with_capacity(out.len() + 32);
        let mut chunks = out.chunks(MAX_FRAME).peekable();
        let first = chunks.next().unwrap_or(&[]);
        let last = chunks.peek().is_none();
        let f = (flags & END_STREAM) | if last { END_HEADERS } else { 0 };
        frames.extend(frame_bytes(HEADERS, f, stream, first));
        while let Some(c) = chunks.next() {
            let f = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            frames.extend(frame_bytes(CONTINUATION, f, stream, c));
        }
        Ok(frames)
    }
}

/// Whether the server takes `v` as an `:authority`.
fn valid_authority(v: &[u8]) -> bool {
    http::uri::Authority::try_from(v).is_ok()
}

/// A header as "literal without indexing, new name" (RFC 7541, 6.2.2),
/// strings not Huffman-coded.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    for s in [name, value] {
        integer(out, s.len(), 7, 0);
        out.extend_from_slice(s);
    }
}

/// An HPACK integer of an `n`-bit prefix, the first byte's other bits
/// being `high`.
fn integer(out: &mut Vec<u8>, mut v: usize, n: u32, high: u8) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(high | v as u8);
        return;
    }
    out.push(high | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn frame_bytes(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(9 + len);
    f.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags]);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Carries one client connection to the server's end of a pipe: the
/// client's frames through a [`Rewriter`], the server's back as they are.
/// Ends when either side does.
pub async fn relay<C>(client: C, server: DuplexStream)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let inbound = async {
        let mut preface = [0u8; PREFACE.len()];
        cr.read_exact(&mut preface)
            .await
            .map_err(|e| e.to_string())?;
        // Not HTTP/2 with prior knowledge: the server says so itself.
        sw.write_all(&preface).await.map_err(|e| e.to_string())?;
        if preface != PREFACE {
            tokio::io::copy(&mut cr, &mut sw)
                .await
                .map_err(|e| e.to_string())?;
            return Ok::<(), String>(());
        }
        let mut rw = Rewriter::new();
        let mut head = [0u8; 9];
        let mut payload = Vec::new();
        loop {
            if cr.read_exact(&mut head).await.is_err() {
                break;
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if len > MAX_READ {
                return Err(format!("a frame of {len} bytes"));
            }
            payload.resize(len, 0);
            cr.read_exact(&mut payload)
                .await
                .map_err(|e| e.to_string())?;
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let out = rw.frame(head[3], head[4], stream, &payload)?;
            sw.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        let _ = sw.shutdown().await;
        Ok(())
    };
    let outbound = async {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::select! {
        r = inbound => {
            if let Err(e) = r {
                tracing::debug!("client connection closed: {e}");
            }
        }
        () = outbound => {}
    }
}

/// The server's end of a relayed connection, as tonic takes a connection.
pub struct Relayed(pub DuplexStream);

impl tonic::transport::server::Connected for Relayed {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Relayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Relayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's header block: indexed :method POST (3), :scheme http (6),
    /// then :path and :authority as literals with incremental indexing
    /// (they enter the dynamic table), as grpc-core sends them.
    fn grpcio_block(authority: &[u8]) -> Vec<u8> {
        let mut b = vec![0x83, 0x86];
        // :path (static 4) with indexing: 0x40 | 4.
        b.push(0x44);
        integer(&mut b, 30, 7, 0);
        b.extend_from_slice(b"/isoexec.v1.RuntimeService/Ve");
        b.push(b'r');
        // :authority (static 1) with indexing.
        b.push(0x41);
        integer(&mut b, authority.len(), 7, 0);
        b.extend_from_slice(authority);
        b
    }

    fn headers_of(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        // Reassemble HEADERS + CONTINUATION payloads, then decode fresh:
        // the output uses no dynamic table.
        let mut block = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            block.extend_from_slice(&rest[9..9 + len]);
            rest = &rest[9 + len..];
        }
        loona_hpack::Decoder::new().decode(&block).unwrap()
    }

    #[test]
    fn a_path_authority_becomes_localhost_and_the_rest_stays() {
        let mut rw = Rewriter::new();
        let out = rw
            .frame(
                HEADERS,
                END_HEADERS,
                1,
                &grpcio_block(b"%2Frun%2Fisoexec%2Fisoexecd.sock"),
            )
            .unwrap();
        assert_eq!(out[3], HEADERS);
        assert_eq!(out[4], END_HEADERS);
        let h = headers_of(&out);
        assert_eq!(
            h,
            vec![
                (b":method".to_vec(), b"POST".to_vec()),
                (b":scheme".to_vec(), b"http".to_vec()),
                (
                    b":path".to_vec(),
                    b"/isoexec.v1.RuntimeService/Ver".to_vec()
                ),
                (b":authority".to_vec(), b"localhost".to_vec()),
            ]
        );
        // The client's second request refers to its dynamic table (index 62
        // is its last insertion, the authority; 63 the path): decoded with
        // the state kept, sent on as literals.
        let out = rw
            .frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                &[0x83, 0x86, 0xbf, 0xbe],
            )
            .unwrap();
        assert_eq!(out[4], END_HEADERS | END_STREAM);
        let h = headers_of(&out);
        assert_eq!(h[2].1, b"/isoexec.v1.RuntimeService/Ver");
        assert_eq!(h[3], (b":authority".to_vec(), b"localhost".to_vec()));
    }

    #[test]
    fn a_valid_authority_is_kept_and_other_frames_pass() {
        let mut rw = Rewriter::new();
        let h = headers_of(
            &rw.frame(HEADERS, END_HEADERS, 1, &grpcio_block(b"localhost:50051"))
                .unwrap(),
        );
        assert_eq!(h[3].1, b"localhost:50051");
        // DATA and SETTINGS frames go through untouched.
        let data = frame_bytes(0x0, END_STREAM, 1, b"\0\0\0\0\0");
        assert_eq!(rw.frame(0x0, END_STREAM, 1, b"\0\0\0\0\0").unwrap(), data);
        assert_eq!(
            rw.frame(0x4, 0, 0, b"").unwrap(),
            frame_bytes(0x4, 0, 0, b"")
        );
    }

    #[test]
    fn padding_priority_and_continuations_are_taken_apart() {
        let block = grpcio_block(b"/raw/socket/path");
        let (a, b) = block.split_at(5);
        // HEADERS, PADDED (3 bytes) and PRIORITY, without END_HEADERS.
        let mut first = vec![3u8, 0, 0, 0, 0, 16];
        first.extend_from_slice(a);
        first.extend_from_slice(&[0, 0, 0]);
        let mut rw = Rewriter::new();
        assert!(rw
            .frame(HEADERS, PADDED | PRIORITY, 5, &first)
            .unwrap()
            .is_empty());
        let out = rw.frame(CONTINUATION, END_HEADERS, 5, b).unwrap();
        let h = headers_of(&out);
        assert_eq!(h[3], (b":authority".to_vec(), b"localhost".to_vec()));
        // A long block is cut into HEADERS and CONTINUATION frames.
        let mut big = grpcio_block(b"x");
        big.push(0x40);
        integer(&mut big, 3, 7, 0);
        big.extend_from_slice(b"big");
        integer(&mut big, 40000, 7, 0);
        big.extend(std::iter::repeat_n(b'v', 40000));
        let out = rw.frame(HEADERS, END_HEADERS, 7, &big).unwrap();
        assert_eq!((out[3], out[4]), (HEADERS, 0));
        assert_eq!(headers_of(&out)[4].1.len(), 40000);
        // Malformed input is an error, not a panic.
        assert!(rw.frame(HEADERS, PADDED | END_HEADERS, 9, &[200]).is_err());
        assert!(rw
            .frame(HEADERS, END_HEADERS, 9, &[0xff, 0xff, 0xff, 0xff])
            .is_err());
    }
}
