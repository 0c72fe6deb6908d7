//! Frames (SPEC.md §7.1, encoded by `renkei_protocol::frames`) on libp2p streams, every read
//! under a timeout.

use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
pub use renkei_protocol::frames::FrameKind as Kind;
use renkei_protocol::frames::{FRAME_HEAD_LEN, decode_head, encode_head};

/// A framing failure.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed or closed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent too little in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The peer broke the framing.
    #[error("protocol violation: {0}")]
    Protocol(#[from] renkei_protocol::frames::FrameError),
}

/// Writes one frame (not flushed).
pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: Kind,
    payload: &[u8],
) -> Result<(), FrameError> {
    // One write for head and payload: each write is a frame of the multiplexer below.
    if payload.len() <= 128 << 10 {
        let mut buf = Vec::with_capacity(payload.len() + 5);
        buf.extend_from_slice(&encode_head(kind, payload.len()));
        buf.extend_from_slice(payload);
        w.write_all(&buf).await?;
    } else {
        w.write_all(&encode_head(kind, payload.len())).await?;
        w.write_all(payload).await?;
    }
    Ok(())
}

/// Reads one frame into `buf` (replacing its content); `Ok(None)` on a clean end of stream.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Option<Kind>, FrameError> {
    let fut = async {
        let mut head = [0u8; FRAME_HEAD_LEN];
        // A clean end of stream is allowed only between frames.
        let mut got = 0;
        while got < head.len() {
            let n = r.read(&mut head[got..]).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(renkei_protocol::frames::FrameError::EndedInside.into())
                };
            }
            got += n;
        }
        let (kind, len) = decode_head(head)?;
        buf.clear();
        buf.resize(len, 0);
        r.read_exact(buf).await?;
        Ok(Some(kind))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FrameError::Timeout)?
}
