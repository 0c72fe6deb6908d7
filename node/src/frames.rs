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
    /// A frame of a type that has no place on this stream.
    #[error("protocol violation: unexpected {0:?} frame")]
    Unexpected(Kind),
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
/// A frame of a type not in `allowed` is a protocol violation, refused before any of its
/// payload is read; the buffer grows only as payload bytes arrive, so a head announcing a large
/// frame costs nothing until the bytes are there.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
    allowed: &[Kind],
) -> Result<Option<Kind>, FrameError> {
    read_frame(r, buf, timeout, allowed, None).await
}

/// [`read`], telling `progress` (bytes of the payload read, its length) as the payload comes:
/// for a large frame, a directory snapshot, a person waits for.
pub async fn read_progress<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
    allowed: &[Kind],
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Option<Kind>, FrameError> {
    read_frame(r, buf, timeout, allowed, Some(progress)).await
}

async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
    allowed: &[Kind],
    progress: Option<&mut (dyn FnMut(u64, u64) + Send)>,
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
        if !allowed.contains(&kind) {
            return Err(FrameError::Unexpected(kind));
        }
        buf.clear();
        buf.reserve(len.min(PREALLOCATE));
        let mut payload = (&mut *r).take(len as u64);
        let n = match progress {
            None => payload.read_to_end(buf).await?,
            Some(progress) => {
                let mut piece = vec![0u8; 64 << 10];
                progress(0, len as u64);
                loop {
                    let n = payload.read(&mut piece).await?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&piece[..n]);
                    progress(buf.len() as u64, len as u64);
                }
                buf.len()
            }
        };
        if n != len {
            return Err(renkei_protocol::frames::FrameError::EndedInside.into());
        }
        Ok(Some(kind))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| FrameError::Timeout)?
}

/// The most a frame's buffer takes before its payload arrives (a chunk fits).
const PREALLOCATE: usize = 80 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_frame_announced_costs_nothing_until_its_bytes_come() {
        // A Blob head announcing 256 MiB, then nothing more.
        let head = encode_head(Kind::Blob, 256 << 20);
        let mut buf = Vec::new();
        let mut r = futures::io::Cursor::new(head.to_vec());
        let e = read(&mut r, &mut buf, Duration::from_secs(1), &[Kind::Header])
            .await
            .unwrap_err();
        assert!(matches!(e, FrameError::Unexpected(Kind::Blob)), "{e}");
        assert_eq!(buf.capacity(), 0);
        let mut r = futures::io::Cursor::new(head.to_vec());
        let e = read(&mut r, &mut buf, Duration::from_secs(1), &[Kind::Blob])
            .await
            .unwrap_err();
        assert!(matches!(e, FrameError::Protocol(_)), "{e}");
        assert!(buf.capacity() <= PREALLOCATE, "{}", buf.capacity());
        // A whole frame reads back.
        let mut wire = Vec::new();
        renkei_protocol::frames::encode_frame(Kind::Ack, b"ack", &mut wire);
        let mut r = futures::io::Cursor::new(wire);
        let k = read(&mut r, &mut buf, Duration::from_secs(1), &[Kind::Ack])
            .await
            .unwrap();
        assert_eq!((k, buf.as_slice()), (Some(Kind::Ack), &b"ack"[..]));
    }

    #[tokio::test]
    async fn a_frame_read_with_progress_reports_its_bytes_as_they_come() {
        let payload: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        renkei_protocol::frames::encode_frame(Kind::Blob, &payload, &mut wire);
        let mut r = futures::io::Cursor::new(wire);
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        let k = read_progress(
            &mut r,
            &mut buf,
            Duration::from_secs(1),
            &[Kind::Blob],
            &mut |got, total| seen.push((got, total)),
        )
        .await
        .unwrap();
        assert_eq!(k, Some(Kind::Blob));
        assert_eq!(buf, payload);
        let total = payload.len() as u64;
        assert_eq!(seen.first(), Some(&(0, total)));
        assert_eq!(seen.last(), Some(&(total, total)));
        assert!(seen.len() > 2, "progress in pieces: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
    }
}
