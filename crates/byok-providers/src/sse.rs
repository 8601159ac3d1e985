//! Server-sent events: the byte stream of a response decoded into events
//! (comments such as DeepSeek's `: keep-alive` skipped, LF and CRLF both
//! accepted) by the maintained `eventsource-stream` parser.

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

/// The events of `response`'s body.
pub(crate) fn events(
    provider: ProviderKind,
    response: reqwest::Response,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send {
    response
        .bytes_stream()
        .eventsource()
        .map(move |item| match item {
            Ok(event) => Ok(Event {
                name: event.event,
                data: event.data,
            }),
            Err(eventsource_stream::EventStreamError::Transport(error)) => {
                Err(transport(provider, error))
            }
            Err(_) => Err(ProviderError::BadResponse { provider }),
        })
}
