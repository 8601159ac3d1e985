//! OpenAI's Responses API (`POST /v1/responses`), for requests that came
//! through byok's Responses door and landed on OpenAI: the client's body
//! goes as it came, the answer comes back as it came, and byok reads from it
//! only what it accounts for (usage, text, tool calls, why it ended).

use byok_core::{
    ChatChoice, ChatChunk, ChatResponse, FinishReason, NativeEvent, ProviderKind, ToolCall,
    ToolCallDelta, Usage,
};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;

use crate::ProviderError;

#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    input_tokens_details: Option<WireInputDetails>,
    output_tokens_details: Option<WireOutputDetails>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireInputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct WireOutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl WireUsage {
    /// The Responses API counts as `Usage` does: input includes cached
    /// tokens, output includes reasoning.
    fn normalise(self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            cached_input_tokens: self.input_tokens_details.unwrap_or_default().cached_tokens,
            output_tokens: self.output_tokens,
            reasoning_tokens: self
                .output_tokens_details
                .unwrap_or_default()
                .reasoning_tokens,
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
struct WireResponse {
    model: Option<String>,
    status: Option<String>,
    incomplete_details: Option<WireIncomplete>,
    #[serde(default)]
    output: Vec<WireItem>,
    usage: Option<WireUsage>,
    /// Why a failed response failed.
    error: Option<WireFailure>,
}

#[derive(Deserialize)]
struct WireIncomplete {
    reason: Option<String>,
}

#[derive(Deserialize)]
struct WireItem {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    content: Vec<WirePart>,
    #[serde(default)]
    summary: Vec<WirePart>,
    call_id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WirePart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    refusal: Option<String>,
}

fn finish(status: Option<&str>, incomplete: Option<&WireIncomplete>, tools: bool) -> FinishReason {
    match (status, incomplete.and_then(|i| i.reason.as_deref())) {
        (Some("incomplete"), Some("max_output_tokens")) => FinishReason::Length,
        (Some("incomplete"), Some("content_filter")) => FinishReason::ContentFilter,
        (Some("completed"), _) if tools => FinishReason::ToolCalls,
        (Some("completed"), _) => FinishReason::Stop,
        _ => FinishReason::Other,
    }
}

/// What byok reads from a whole Responses answer; the answer itself rides
/// along as [`ChatResponse::native`].
pub(crate) fn answer(
    provider: ProviderKind,
    raw: Value,
    asked: &str,
) -> Result<ChatResponse, ProviderError> {
    let wire =
        WireResponse::deserialize(&raw).map_err(|_| ProviderError::BadResponse { provider })?;
    let mut choice = ChatChoice::default();
    for item in &wire.output {
        match item.kind.as_str() {
            "message" => {
                for part in &item.content {
                    match part.kind.as_str() {
                        "output_text" => choice.text.push_str(part.text.as_deref().unwrap_or("")),
                        "refusal" => choice
                            .refusal
                            .get_or_insert_with(String::new)
                            .push_str(part.refusal.as_deref().unwrap_or("")),
                        _ => {}
                    }
                }
            }
            "reasoning" => {
                for part in &item.summary {
                    choice
                        .reasoning
                        .get_or_insert_with(String::new)
                        .push_str(part.text.as_deref().unwrap_or(""));
                }
            }
            "function_call" => choice.tool_calls.push(ToolCall {
                id: item.call_id.clone().unwrap_or_default(),
                name: item.name.clone().unwrap_or_default(),
                arguments: item.arguments.clone().unwrap_or_default(),
                signature: None,
            }),
            _ => {}
        }
    }
    choice.finish_reason = Some(finish(
        wire.status.as_deref(),
        wire.incomplete_details.as_ref(),
        !choice.tool_calls.is_empty(),
    ));
    Ok(ChatResponse {
        model: wire.model.unwrap_or_else(|| asked.to_owned()),
        choices: vec![choice],
        usage: wire.usage.map(WireUsage::normalise),
        native: Some(raw),
    })
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    delta: Option<String>,
    output_index: Option<u64>,
    item: Option<WireItem>,
    response: Option<WireResponse>,
    /// An `error` event's code.
    code: Option<String>,
}

#[derive(Deserialize)]
struct WireFailure {
    code: Option<String>,
}

/// What the decoder remembers between events.
#[derive(Default)]
struct Decoder {
    /// Output index → tool call index.
    calls: Vec<(u64, u32)>,
    done: bool,
}

impl Decoder {
    /// The pieces one event yields.
    fn event(
        &mut self,
        provider: ProviderKind,
        event: WireEvent,
    ) -> Vec<Result<ChatChunk, ProviderError>> {
        match event.kind.as_str() {
            "response.created" => event
                .response
                .and_then(|r| r.model)
                .map(|m| vec![Ok(ChatChunk::Model(m))])
                .unwrap_or_default(),
            "response.output_text.delta" => event
                .delta
                .map(|d| vec![Ok(ChatChunk::Text(d))])
                .unwrap_or_default(),
            "response.refusal.delta" => event
                .delta
                .map(|d| vec![Ok(ChatChunk::Refusal(d))])
                .unwrap_or_default(),
            "response.reasoning_summary_text.delta" => event
                .delta
                .map(|d| vec![Ok(ChatChunk::Reasoning(d))])
                .unwrap_or_default(),
            "response.output_item.added" => match event.item {
                Some(item) if item.kind == "function_call" => {
                    let index = u32::try_from(self.calls.len()).unwrap_or(u32::MAX);
                    self.calls.push((event.output_index.unwrap_or(0), index));
                    vec![Ok(ChatChunk::ToolCall(ToolCallDelta {
                        index,
                        id: item.call_id,
                        name: item.name,
                        arguments: item.arguments.unwrap_or_default(),
                        signature: None,
                    }))]
                }
                _ => vec![],
            },
            "response.function_call_arguments.delta" => {
                let at = event.output_index.unwrap_or(0);
                match (self.calls.iter().find(|(o, _)| *o == at), event.delta) {
                    (Some((_, index)), Some(delta)) => {
                        vec![Ok(ChatChunk::ToolCall(ToolCallDelta {
                            index: *index,
                            id: None,
                            name: None,
                            arguments: delta,
                            signature: None,
                        }))]
                    }
                    _ => vec![],
                }
            }
            "response.completed" | "response.incomplete" => {
                self.done = true;
                let Some(response) = event.response else {
                    return vec![Err(ProviderError::BadResponse { provider })];
                };
                let reason = finish(
                    response.status.as_deref(),
                    response.incomplete_details.as_ref(),
                    !self.calls.is_empty(),
                );
                let mut out = vec![Ok(ChatChunk::Finish(reason))];
                if let Some(usage) = response.usage {
                    out.push(Ok(ChatChunk::Usage(usage.normalise())));
                }
                out
            }
            "response.failed" | "error" => {
                self.done = true;
                let code = event
                    .code
                    .or_else(|| event.response.and_then(|r| r.error).and_then(|e| e.code));
                let error = match code.as_deref() {
                    Some("server_error") => ProviderError::Unavailable {
                        provider,
                        status: 500,
                    },
                    Some("rate_limit_exceeded") => ProviderError::RateLimited {
                        provider,
                        retry_after: None,
                    },
                    _ => ProviderError::StreamError { provider },
                };
                vec![Err(error)]
            }
            _ => vec![],
        }
    }
}

/// Decodes the Responses API's events: each goes out as it came
/// ([`ChatChunk::Native`]), followed by what byok reads from it. The stream
/// is complete only at `response.completed` (or `response.incomplete`).
pub(crate) fn decode(
    provider: ProviderKind,
    events: impl futures_util::Stream<Item = Result<crate::sse::Event, ProviderError>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
    let state = (
        Box::pin(events),
        Decoder::default(),
        std::collections::VecDeque::<Result<ChatChunk, ProviderError>>::new(),
    );
    futures_util::stream::unfold(
        state,
        move |(mut events, mut decoder, mut queued)| async move {
            loop {
                if let Some(item) = queued.pop_front() {
                    if item.is_err() {
                        queued.clear();
                        decoder.done = true;
                    }
                    return Some((item, (events, decoder, queued)));
                }
                if decoder.done {
                    return None;
                }
                match events.next().await {
                    None => {
                        decoder.done = true;
                        queued.push_back(Err(ProviderError::IncompleteStream { provider }));
                    }
                    Some(Err(error)) => {
                        decoder.done = true;
                        queued.push_back(Err(error));
                    }
                    Some(Ok(event)) => {
                        let decoded = match serde_json::from_str::<WireEvent>(&event.data) {
                            Ok(data) => decoder.event(provider, data),
                            Err(_) => vec![Err(ProviderError::BadResponse { provider })],
                        };
                        let native = ChatChunk::Native(NativeEvent {
                            event: (!event.name.is_empty()).then_some(event.name),
                            data: event.data,
                        });
                        // A model named comes before the event that named it.
                        let (models, rest): (Vec<_>, Vec<_>) = decoded
                            .into_iter()
                            .partition(|c| matches!(c, Ok(ChatChunk::Model(_))));
                        queued.extend(models);
                        queued.push_back(Ok(native));
                        queued.extend(rest);
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const FRAGMENTS: &[&str] = &[
        r#"{"type":"response.created","response":{"model":"gpt-5.4","output":[]}}"#,
        r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"function_call","call_id":"c","name":"f","arguments":""}}"#,
        r#"{"type":"response.function_call_arguments.delta","output_index":0,"delta":"{"}"#,
        r#"{"type":"response.output_text.delta","output_index":1,"delta":"hi"}"#,
        r#"{"type":"response.completed","response":{"status":"completed","output":[],"usage":{"input_tokens":3,"output_tokens":2}}}"#,
        r#"{"type":"response.failed","response":{"status":"failed"}}"#,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any sequence of events: no panic, and the stream ends.
        #[test]
        fn any_events_decode_without_panicking(
            events in proptest::collection::vec(("(response.created|response.output_item.added|response.output_text.delta|response.completed|error)", crate::sse::fuzzing::data(FRAGMENTS)), 0..12),
        ) {
            let items = crate::sse::fuzzing::decoded_len(events.clone(), |e| decode(ProviderKind::OpenAi, e));
            prop_assert!(items <= events.len() * 4 + 2);
        }

        /// Any body: reading an answer never panics.
        #[test]
        fn any_answer_body_is_read_or_refused(body in prop_oneof![crate::sse::fuzzing::data(FRAGMENTS), ".{0,200}"]) {
            if let Ok(raw) = serde_json::from_str::<Value>(&body) {
                let _ = answer(ProviderKind::OpenAi, raw, "m");
            }
        }
    }

    #[test]
    fn an_answer_is_read_for_accounting_and_kept_whole() {
        let raw = serde_json::json!({"model": "gpt-5.4", "status": "completed", "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}], "encrypted_content": "e"},
            {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
            {"type": "message", "content": [{"type": "output_text", "text": "hi", "annotations": []}]}],
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 7,
                      "output_tokens_details": {"reasoning_tokens": 3}}});
        let response = answer(ProviderKind::OpenAi, raw.clone(), "asked").unwrap();
        assert_eq!(response.native, Some(raw));
        let choice = &response.choices[0];
        assert_eq!(choice.text, "hi");
        assert_eq!(choice.reasoning.as_deref(), Some("think"));
        assert_eq!(choice.tool_calls[0].id, "call_1");
        assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
        let usage = response.usage.unwrap();
        assert_eq!(
            (
                usage.input_tokens,
                usage.cached_input_tokens,
                usage.output_tokens,
                usage.reasoning_tokens
            ),
            (10, 4, 7, 3)
        );
    }
}
