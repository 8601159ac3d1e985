//! Server-sent events: the byte stream of a response decoded into events
//! (comments such as DeepSeek's `: keep-alive` skipped, LF, CRLF and CR
//! line endings accepted), with the same size cap as whole bodies.
//!
//! The parser is linear: each byte is examined once for a line ending, however
//! the body is split into chunks (a library parser that rescans its whole
//! buffer on every chunk made one unterminated 8 MiB line cost seconds of CPU).

use std::collections::VecDeque;

use byok_core::ProviderKind;
use futures_util::{Stream, StreamExt as _};

use crate::ProviderError;
use crate::http::transport;

/// One event: its name (empty when unnamed) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: String,
}

/// The SSE framing, fed bytes as they come.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    buf: Vec<u8>,
    /// Where the current (unfinished) line starts.
    start: usize,
    /// Bytes before this offset were already searched for a line ending.
    scanned: usize,
    name: String,
    data: String,
    has_data: bool,
    /// Bytes examined, for the linearity test.
    examined: usize,
}

/// Why a stream's bytes are not SSE.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotSse;

impl Parser {
    /// Feeds `bytes`; completed events are appended to `out`.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut VecDeque<Event>) -> Result<(), NotSse> {
        self.buf.extend_from_slice(bytes);
        loop {
            let from = self.scanned.max(self.start);
            let Some(offset) = self.buf[from..]
                .iter()
                .position(|b| matches!(b, b'\n' | b'\r'))
            else {
                self.examined += self.buf.len() - from;
                self.scanned = self.buf.len();
                break;
            };
            self.examined += offset + 1;
            let end = from + offset;
            let next = match self.buf[end] {
                b'\r' if end + 1 == self.buf.len() => {
                    // A CR at the end of what we have: wait for a possible LF.
                    self.scanned = end;
                    break;
                }
                b'\r' if self.buf[end + 1] == b'\n' => end + 2,
                _ => end + 1,
            };
            let line = std::str::from_utf8(&self.buf[self.start..end]).map_err(|_| NotSse)?;
            let line = line.to_owned();
            self.start = next;
            self.scanned = next;
            self.line(&line, out);
        }
        // Keep the buffer no larger than the unfinished line.
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        Ok(())
    }

    /// The end of the body: a last line without its ending still counts, and
    /// an event it completes is dispatched.
    pub(crate) fn finish(&mut self, out: &mut VecDeque<Event>) -> Result<(), NotSse> {
        if self.start < self.buf.len() {
            let rest = self.buf[self.start..].to_vec();
            let line = std::str::from_utf8(rest.strip_suffix(b"\r").unwrap_or(&rest))
                .map_err(|_| NotSse)?
                .to_owned();
            self.start = self.buf.len();
            self.line(&line, out);
        }
        self.dispatch(out);
        Ok(())
    }

    fn line(&mut self, line: &str, out: &mut VecDeque<Event>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return; // a comment (DeepSeek's keep-alives)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.name),
            _ => {} // id, retry and unknown fields change nothing here
        }
    }

    fn dispatch(&mut self, out: &mut VecDeque<Event>) {
        if self.has_data {
            out.push_back(Event {
                name: std::mem::take(&mut self.name),
                data: std::mem::take(&mut self.data),
            });
        }
        self.name.clear();
        self.has_data = false;
    }
}

/// The events of `response`'s body; at most `limit` bytes are read.
pub(crate) fn events(
    provider: ProviderKind,
    response: reqwest::Response,
    limit: usize,
) -> impl Stream<Item = Result<Event, ProviderError>> + Send {
    struct State<S> {
        bytes: std::pin::Pin<Box<S>>,
        parser: Parser,
        ready: VecDeque<Event>,
        seen: usize,
        done: bool,
    }
    let state = State {
        bytes: Box::pin(response.bytes_stream()),
        parser: Parser::default(),
        ready: VecDeque::new(),
        seen: 0,
        done: false,
    };
    futures_util::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            let failure = match state.bytes.next().await {
                Some(Ok(chunk)) => {
                    state.seen += chunk.len();
                    if state.seen > limit {
                        ProviderError::BadResponse { provider }
                    } else if state.parser.push(&chunk, &mut state.ready).is_ok() {
                        continue;
                    } else {
                        ProviderError::BadResponse { provider }
                    }
                }
                Some(Err(error)) => transport(provider, error),
                None => {
                    state.done = true;
                    if state.parser.finish(&mut state.ready).is_ok() {
                        continue;
                    }
                    ProviderError::BadResponse { provider }
                }
            };
            state.done = true;
            state.ready.clear();
            return Some((Err(failure), state));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(pieces: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        for piece in pieces {
            parser.push(piece, &mut out).unwrap();
        }
        parser.finish(&mut out).unwrap();
        out.into()
    }

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: name.to_owned(),
            data: data.to_owned(),
        }
    }

    const BODY: &[u8] = b": keep-alive\r\n\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\ndata: one\ndata: two\n\ndata:x\rid: 7\r\rdata: last";

    #[test]
    fn events_are_the_same_however_the_body_is_split() {
        let expected = vec![
            event("message_start", "{\"a\":1}"),
            event("", "one\ntwo"),
            event("", "x"),
            event("", "last"),
        ];
        assert_eq!(parse_in(&[BODY]), expected);
        for split in 0..=BODY.len() {
            let (a, b) = BODY.split_at(split);
            assert_eq!(parse_in(&[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(parse_in(&bytes), expected);
    }

    #[test]
    fn each_byte_is_examined_once_for_a_line_ending() {
        // One long unterminated line fed a byte at a time: a rescanning
        // parser examines n²/2 bytes; this one n.
        let line = vec![b'a'; 64 * 1024];
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        parser.push(b"data: ", &mut out).unwrap();
        for byte in line.chunks(1) {
            parser.push(byte, &mut out).unwrap();
        }
        parser.push(b"\n\n", &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), line.len());
        assert!(
            parser.examined <= line.len() + 16,
            "examined {} bytes for {}",
            parser.examined,
            line.len()
        );
    }

    #[test]
    fn bytes_that_are_not_text_are_refused() {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        assert_eq!(parser.push(b"data: \xff\xfe\n", &mut out), Err(NotSse));
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn parse_split(body: &[u8], cuts: &[usize]) -> Result<Vec<Event>, NotSse> {
        let mut parser = Parser::default();
        let mut out = VecDeque::new();
        let mut start = 0;
        for cut in cuts
            .iter()
            .map(|c| c % (body.len() + 1))
            .chain([body.len()])
        {
            let cut = cut.max(start);
            parser.push(&body[start..cut], &mut out)?;
            start = cut;
        }
        parser.finish(&mut out)?;
        Ok(out.into())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes: no panic, and the same events (or the same refusal)
        /// however they are split.
        #[test]
        fn any_bytes_parse_the_same_however_split(
            body in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), any::<u8>()],
                0..400,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let whole = parse_split(&body, &[]);
            let split = parse_split(&body, &cuts);
            prop_assert_eq!(whole, split);
        }
    }
}

/// What the adapters' decoder fuzz tests share.
#[cfg(test)]
pub(crate) mod fuzzing {
    use futures_util::{Stream, StreamExt as _};
    use proptest::prelude::*;

    use super::Event;
    use crate::ProviderError;

    /// Event data: one of a provider's JSON `fragments`, or anything.
    pub(crate) fn data(fragments: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(fragments).prop_map(str::to_owned),
            ".{0,80}",
        ]
    }

    /// Runs `decode` over `events` to its end; returns how many items it gave.
    pub(crate) fn decoded_len<S: Stream>(
        events: Vec<(String, String)>,
        decode: impl FnOnce(
            futures_util::stream::Iter<std::vec::IntoIter<Result<Event, ProviderError>>>,
        ) -> S,
    ) -> usize {
        let events: Vec<_> = events
            .into_iter()
            .map(|(name, data)| Ok(Event { name, data }))
            .collect();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(decode(futures_util::stream::iter(events)).count())
    }
}
