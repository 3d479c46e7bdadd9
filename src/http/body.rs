//! A response body: whole in memory (every answer but one), or a stream of chunks a
//! blocking producer sends through a bounded channel (the user export), so an answer of any
//! size is sent in bounded memory. A producer that fails mid-stream ends the body with an
//! error: hyper then cuts the connection, and the client sees a truncated answer rather than
//! a complete-looking one.

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::Full;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// How many chunks a stream holds between its producer and the socket.
const STREAM_CHUNKS: usize = 4;

pub enum Body {
    Whole(Full<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

/// The producer's end of a streamed body: `send` blocks while the socket is behind, and
/// fails once the client has gone.
pub struct BodySender(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl BodySender {
    /// Sends a chunk; Err when the client is gone (stop producing).
    pub fn send(&self, chunk: Bytes) -> Result<(), Gone> {
        self.0.blocking_send(Ok(chunk)).map_err(|_| Gone)
    }

    /// Ends the body with an error: the connection is cut, the answer visibly incomplete.
    pub fn fail(self, error: impl std::fmt::Display) {
        let _ = self.0.blocking_send(Err(std::io::Error::other(error.to_string())));
    }
}

/// The client hung up (or the request was a HEAD): nobody reads the stream anymore.
#[derive(Debug)]
pub struct Gone;

impl Body {
    /// A streamed body and the sender its producer (on a blocking thread) writes to.
    pub fn channel() -> (BodySender, Body) {
        let (sender, receiver) = mpsc::channel(STREAM_CHUNKS);
        (BodySender(sender), Body::Stream(receiver))
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::Whole(Full::default())
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Whole(Full::new(bytes))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::from(Bytes::from(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Body {
        Body::from(Bytes::from(text))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Body {
        Body::from(Bytes::from_static(text.as_bytes()))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Whole(full) => Pin::new(full).poll_frame(cx).map_err(|never: Infallible| match never {}),
            Body::Stream(receiver) => receiver.poll_recv(cx).map(|chunk| chunk.map(|chunk| chunk.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Whole(full) => full.is_end_stream(),
            Body::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Whole(full) => full.size_hint(),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}
