//! Server-sent events: the byte stream of a response decoded into events
//! (comments such as DeepSeek's `: keep-alive` skipped, LF and CRLF both
//! accepted) by the maintained `eventsource-stream` parser, with the same
//! size cap as whole bodies.

use byok_core::ProviderKind;
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};

use crate::ProviderError;
use crate::http::transport;

/// One event: its name (empty when unnamed) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// Raised inside the byte stream when the body passes the cap.
#[derive(Debug, thiserror::Error)]
#[error("stream larger than the response size cap")]
struct TooLarge;

/// The events of `response`'s body; at most `limit` bytes are read.
pub(crate) fn events(
    provider: ProviderKind,
    response: reqwest::Response,
    limit: usize,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send {
    let bounded = response.bytes_stream().scan(0usize, move |seen, chunk| {
        let item = match chunk {
            Ok(bytes) => {
                *seen += bytes.len();
                if *seen > limit {
                    Err(StreamFailure::TooLarge(TooLarge))
                } else {
                    Ok(bytes)
                }
            }
            Err(error) => Err(StreamFailure::Transport(error)),
        };
        std::future::ready(Some(item))
    });
    bounded.eventsource().map(move |item| match item {
        Ok(event) => Ok(Event {
            name: event.event,
            data: event.data,
        }),
        Err(eventsource_stream::EventStreamError::Transport(StreamFailure::Transport(error))) => {
            Err(transport(provider, error))
        }
        Err(_) => Err(ProviderError::BadResponse { provider }),
    })
}

#[derive(Debug, thiserror::Error)]
enum StreamFailure {
    #[error(transparent)]
    Transport(reqwest::Error),
    #[error(transparent)]
    TooLarge(TooLarge),
}
