//! Framing: every message travels in one frame.
//!
//! ```text
//!  0       4       6       8              12
//!  +-------+-------+-------+---------------+---------------------+
//!  | len   | type  | flags | request id    | body (protobuf)     |
//!  | u32 BE| u16 BE| u16 BE| u32 BE        | len - 8 bytes       |
//!  +-------+-------+-------+---------------+---------------------+
//! ```
//!
//! `len` counts everything after itself. The decoder is push-style: hand it bytes, it answers
//! with a frame, "need more bytes", or an error; it never panics and never allocates more than
//! the declared (bounded) frame length.

use crate::messages::*;
use bytes::{Buf, BufMut, BytesMut};
use prost::Message as _;

/// Largest allowed value of the `len` field: 16 MiB of body plus the header.
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024 + 8;
/// Bytes of header after the length field.
const HEADER_AFTER_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} exceeds the maximum of {MAX_FRAME_LEN}")]
    TooLong(u32),
    #[error("frame length {0} is shorter than the 8-byte header")]
    TooShort(u32),
    #[error("unknown message type {0}")]
    UnknownType(u16),
    #[error("reserved flags are set: {0:#06x}")]
    Flags(u16),
    #[error("malformed body of message type {ty}: {reason}")]
    Body { ty: u16, reason: String },
}

macro_rules! messages {
    ($($code:literal => $variant:ident($ty:ty),)*) => {
        /// A decoded message body, tagged by its frame type.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Message {
            $($variant($ty),)*
        }

        impl Message {
            pub fn type_code(&self) -> u16 {
                match self { $(Message::$variant(_) => $code,)* }
            }

            pub fn name(&self) -> &'static str {
                match self { $(Message::$variant(_) => stringify!($variant),)* }
            }

            fn encoded_body_len(&self) -> usize {
                match self { $(Message::$variant(m) => m.encoded_len(),)* }
            }

            fn encode_body(&self, out: &mut BytesMut) {
                match self {
                    $(Message::$variant(m) => m.encode(out).expect("BytesMut grows as needed"),)*
                }
            }

            fn decode_body(ty: u16, body: &[u8]) -> Result<Message, FrameError> {
                let bad = |e: prost::DecodeError| FrameError::Body { ty, reason: e.to_string() };
                Ok(match ty {
                    $($code => Message::$variant(<$ty>::decode(body).map_err(bad)?),)*
                    other => return Err(FrameError::UnknownType(other)),
                })
            }
        }
    };
}

messages! {
    1 => Hello(Hello),
    2 => Welcome(Welcome),
    3 => Register(Register),
    4 => Login(Login),
    5 => Auth(Auth),
    6 => Session(Session),
    7 => Logout(Empty),
    8 => Ok(Empty),
    9 => Error(ErrorMsg),
    10 => Ping(Empty),
    11 => Pong(Empty),
    20 => ListDevices(Empty),
    21 => Devices(Devices),
    22 => RevokeDevice(RevokeDevice),
    23 => RenameDevice(RenameDevice),
    24 => ChangePassword(ChangePassword),
    30 => ListFolders(Empty),
    31 => Folders(Folders),
    32 => OpenFolder(OpenFolder),
    33 => Folder(FolderInfo),
    34 => FolderChanged(FolderChanged),
    40 => GetChanges(GetChanges),
    41 => Changes(Changes),
    42 => QueryChunks(QueryChunks),
    43 => ChunkPresence(ChunkPresence),
    44 => PutChunks(PutChunks),
    45 => GetChunks(GetChunks),
    46 => Chunks(Chunks),
    47 => Commit(Commit),
    48 => CommitResult(CommitResult),
    49 => GetSignatures(GetSignatures),
    50 => Signatures(Signatures),
    51 => AnnounceChunks(UploadProgress),
    52 => ChunksAnnounced(UploadProgress),
    60 => ListVersions(ListVersions),
    61 => Versions(Versions),
    62 => ListTrash(ListTrash),
    63 => Trash(Trash),
    64 => Restore(Restore),
    65 => Usage(Empty),
    66 => UsageInfo(UsageInfo),
}

/// One frame: a message and the request id that pairs a reply with its request.
///
/// Requests carry a non-zero id chosen by the client; the reply carries the same id. Id 0 is
/// reserved for messages the server pushes unasked (`FolderChanged`, `ChunksAnnounced`).
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    pub request_id: u32,
    pub message: Message,
}

impl Frame {
    pub fn new(request_id: u32, message: Message) -> Frame {
        Frame { request_id, message }
    }

    /// Total encoded size, header included.
    pub fn encoded_len(&self) -> usize {
        4 + HEADER_AFTER_LEN + self.message.encoded_body_len()
    }

    /// Appends the encoded frame to `out`. Fails if the body is larger than the protocol allows.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), FrameError> {
        let body = self.message.encoded_body_len();
        let len = (HEADER_AFTER_LEN + body) as u64;
        if len > MAX_FRAME_LEN as u64 {
            return Err(FrameError::TooLong(len.min(u32::MAX as u64) as u32));
        }
        out.reserve(4 + len as usize);
        out.put_u32(len as u32);
        out.put_u16(self.message.type_code());
        out.put_u16(0);
        out.put_u32(self.request_id);
        self.message.encode_body(out);
        Ok(())
    }

    pub fn to_bytes(&self) -> Result<BytesMut, FrameError> {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b)?;
        Ok(b)
    }
}

/// Outcome of [`decode_frame`].
#[derive(Debug, PartialEq)]
pub enum Decoded {
    /// A whole frame, and how many bytes of the input it used.
    Frame(Frame, usize),
    /// The input holds only part of a frame; at least this many more bytes are needed.
    NeedMore(usize),
}

/// Decodes the first frame in `buf`. Pure: consumes nothing, the caller advances by the count.
pub fn decode_frame(buf: &[u8]) -> Result<Decoded, FrameError> {
    if buf.len() < 4 {
        return Ok(Decoded::NeedMore(4 - buf.len()));
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLong(len));
    }
    if (len as usize) < HEADER_AFTER_LEN {
        return Err(FrameError::TooShort(len));
    }
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(Decoded::NeedMore(total - buf.len()));
    }
    let mut h = &buf[4..12];
    let ty = h.get_u16();
    let flags = h.get_u16();
    let request_id = h.get_u32();
    if flags != 0 {
        return Err(FrameError::Flags(flags));
    }
    let message = Message::decode_body(ty, &buf[12..total])?;
    Ok(Decoded::Frame(Frame { request_id, message }, total))
}

/// A buffering push decoder: `push` bytes as they arrive, then take frames with `next_frame`.
#[derive(Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The internal buffer, for drivers that read straight into it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes held that are not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `None` if more bytes are needed. After an error the stream is
    /// unusable and the connection must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        match decode_frame(&self.buf)? {
            Decoded::Frame(f, used) => {
                self.buf.advance(used);
                Ok(Some(f))
            }
            Decoded::NeedMore(n) => {
                // Grow with the data that actually arrives: a peer announcing a 16 MiB frame
                // must send 16 MiB before it costs 16 MiB.
                self.buf.reserve(n.min(64 * 1024));
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame::new(
            7,
            Message::Login(Login {
                user: "ann".into(),
                password: "pw".into(),
                device_name: "laptop".into(),
                replaces_device: 0,
            }),
        )
    }

    #[test]
    fn round_trip() {
        let f = sample();
        let bytes = f.to_bytes().unwrap();
        assert_eq!(bytes.len(), f.encoded_len());
        assert_eq!(decode_frame(&bytes).unwrap(), Decoded::Frame(f, bytes.len()));
    }

    #[test]
    fn byte_at_a_time() {
        let f = sample();
        let bytes = f.to_bytes().unwrap();
        let mut d = FrameDecoder::new();
        for (i, b) in bytes.iter().enumerate() {
            assert_eq!(d.next_frame().unwrap(), None, "early frame at {i}");
            d.push(&[*b]);
        }
        assert_eq!(d.next_frame().unwrap(), Some(f));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(decode_frame(&[0xff, 0xff, 0xff, 0xff]), Err(FrameError::TooLong(u32::MAX)));
        assert_eq!(decode_frame(&[0, 0, 0, 3, 0, 0, 0]), Err(FrameError::TooShort(3)));
        let mut b = sample().to_bytes().unwrap();
        b[4] = 0xEE;
        assert!(matches!(decode_frame(&b), Err(FrameError::UnknownType(_))));
        let mut b = sample().to_bytes().unwrap();
        b[7] = 1;
        assert_eq!(decode_frame(&b), Err(FrameError::Flags(1)));
    }
}
