//! Framing on our libp2p streams (SPEC.md §7.1): `type (1 byte) | length (u32 BE) | payload`,
//! with a per-type size limit, and every read under a timeout.

use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An envelope header.
    Header = 1,
    /// One sealed chunk.
    Chunk = 2,
    /// A signed ack.
    Ack = 3,
    /// A refusal before any ack could be made: u16 code + UTF-8 reason.
    Refuse = 4,
    /// The sender has nothing more on this stream.
    End = 5,
    /// A directory request (JSON).
    Request = 6,
    /// A directory response: a blob (snapshot, delta or JSON listing).
    Blob = 7,
    /// A directory response: not found / error (UTF-8 reason).
    NotFound = 8,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Header,
            2 => Kind::Chunk,
            3 => Kind::Ack,
            4 => Kind::Refuse,
            5 => Kind::End,
            6 => Kind::Request,
            7 => Kind::Blob,
            8 => Kind::NotFound,
            _ => return None,
        })
    }

    /// The largest payload accepted for this kind.
    pub fn limit(self) -> usize {
        match self {
            Kind::Header => 4096,
            Kind::Chunk => renkei_protocol::envelope::MAX_CHUNK_SIZE as usize + 16,
            // The largest ack the format allows (256 findings with 255-byte codes) fits.
            Kind::Ack => 80 * 1024,
            Kind::Refuse | Kind::NotFound => 4096,
            Kind::End => 0,
            Kind::Request => 4096,
            Kind::Blob => 256 << 20,
        }
    }
}

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
    Protocol(&'static str),
}

/// Writes one frame (not flushed).
pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: Kind,
    payload: &[u8],
) -> Result<(), FrameError> {
    let mut head = [0u8; 5];
    head[0] = kind as u8;
    head[1..].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    Ok(())
}

/// Flushes the writer.
pub async fn flush<W: AsyncWrite + Unpin>(w: &mut W) -> Result<(), FrameError> {
    w.flush().await?;
    Ok(())
}

/// Reads one frame into `buf` (replacing its content); `Ok(None)` on a clean end of stream.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<Option<Kind>, FrameError> {
    let fut = async {
        let mut head = [0u8; 5];
        // A clean end of stream is allowed only between frames.
        let mut got = 0;
        while got < head.len() {
            let n = r.read(&mut head[got..]).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Protocol("stream ended inside a frame"))
                };
            }
            got += n;
        }
        let kind = Kind::from_u8(head[0]).ok_or(FrameError::Protocol("unknown frame type"))?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > kind.limit() {
            return Err(FrameError::Protocol("frame too large"));
        }
        buf.clear();
        buf.resize(len, 0);
        r.read_exact(buf).await?;
        Ok(Some(kind))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FrameError::Timeout)?
}
