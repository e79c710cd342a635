//! The pipe protocol between the host and `ca-plugin-worker`: length-prefixed frames
//! `[u32 LE length of the rest][u8 tag][payload]` on the worker's stdin/stdout.
//!
//! Plugin documents travel as their raw JSON bytes (no double encoding); only the load request
//! and error replies are JSON of their own.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Host -> worker: load and configure the plugin (payload: [`LoadRequest`] JSON).
pub const TAG_LOAD: u8 = 1;
/// Host -> worker: one step (payload: StepInput JSON bytes).
pub const TAG_STEP: u8 = 2;
/// Worker -> host: loaded; payload is the manifest JSON bytes.
pub const TAG_READY: u8 = 0x10;
/// Worker -> host: step reply; payload is the StepOutput JSON bytes.
pub const TAG_OUTPUT: u8 = 0x11;
/// Worker -> host: the call failed; payload is a [`WorkerFailure`] JSON.
pub const TAG_FAILURE: u8 = 0x12;

/// Largest frame either side accepts: a 4 MiB StepInput plus slack.
pub const MAX_FRAME: usize = plugin_abi::doc::MAX_INPUT_BYTES + 4096;

/// What the worker must load: the same file and approved hash the host checked.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LoadRequest {
    /// Path of the plugin library.
    pub path: String,
    /// Approved SHA-256 (hex).
    pub sha256: String,
    /// The config object passed to `configure`.
    pub config: serde_json::Value,
}

/// A failure the worker reports without dying.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerFailure {
    /// The plugin returned a non-OK status code.
    Status {
        /// Raw status code.
        code: i32,
        /// The plugin's diagnostic (truncated).
        message: String,
    },
    /// The plugin's reply exceeded the sink cap.
    Oversize {
        /// The cap.
        cap: usize,
    },
    /// The file's hash is not the approved one.
    HashMismatch {
        /// Approved.
        expected: String,
        /// Actual.
        actual: String,
    },
    /// Opening, dlopen or the ABI check failed.
    Load {
        /// Why.
        message: String,
    },
    /// The request frame was malformed.
    Protocol {
        /// Why.
        message: String,
    },
}

/// Writes one frame and flushes.
pub fn write_frame(w: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4] = tag;
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

/// Reads one frame; `Ok(None)` on a clean EOF before the frame starts.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    let tag = buf.remove(0);
    Ok(Some((tag, buf)))
}

/// Async counterparts used by the host.
pub(crate) mod aio {
    use std::io;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::MAX_FRAME;

    /// Writes one frame and flushes.
    pub async fn write_frame(
        w: &mut (impl AsyncWrite + Unpin),
        tag: u8,
        payload: &[u8],
    ) -> io::Result<()> {
        let len = u32::try_from(payload.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        let mut buf = Vec::with_capacity(payload.len() + 5);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.push(tag);
        buf.extend_from_slice(payload);
        w.write_all(&buf).await?;
        w.flush().await
    }

    /// Reads one frame; an EOF anywhere is `UnexpectedEof`.
    pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> io::Result<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        r.read_exact(&mut len).await?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad frame length",
            ));
        }
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).await?;
        let tag = buf.remove(0);
        Ok((tag, buf))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip_and_eof() {
        let mut buf = Vec::new();
        write_frame(&mut buf, TAG_STEP, b"{\"v\":1}").unwrap();
        let mut r = &buf[..];
        let (tag, payload) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(tag, TAG_STEP);
        assert_eq!(payload, b"{\"v\":1}");
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut buf = (u32::MAX).to_le_bytes().to_vec();
        buf.push(TAG_STEP);
        let err = read_frame(&mut &buf[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
