//! OpenAI's Responses API (`POST /v1/responses`), the gateway's door for
//! Codex, the Agents SDK and `client.responses`: the request, the response
//! object and the stream's events, typed, and their translation to and from
//! byok's provider-neutral types.
//!
//! byok keeps no responses. When the route lands on OpenAI (or Azure
//! OpenAI) the client's request goes to its own `/v1/responses` as it came (so models OpenAI
//! serves only there work, and `previous_response_id` and `store: true` are
//! OpenAI's to honour, in the user's own OpenAI account); the answer comes
//! back as OpenAI sent it. When the route lands elsewhere the request is
//! translated statelessly; anything that needs OpenAI (`previous_response_id`,
//! `store: true`, OpenAI's hosted tools, unknown fields) makes the other
//! providers refuse it, naming the field.

use std::fmt::Write as _;
use std::sync::Arc;

use byok_core::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, ContentPart, CostReport, FinishReason,
    JsonSchema, NativeApi, NativeRequest, ReasoningEffort, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::openai::{
    Extra, Only, Refusal, add_tool_delta, bounded, id_safe_tool_call_id, image_url, invalid,
    split_tool_call_id,
};

/// OpenAI's Responses request. Unknown fields go to OpenAI as they came (it
/// judges them); every other provider refuses the request naming them.
#[derive(Deserialize)]
pub(crate) struct ResponsesRequest {
    model: String,
    input: Option<InInput>,
    instructions: Option<String>,
    tools: Option<Vec<InTool>>,
    tool_choice: Option<InToolChoice>,
    text: Option<InText>,
    reasoning: Option<InReasoning>,
    max_output_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    #[serde(default)]
    stream: bool,
    store: Option<bool>,
    previous_response_id: Option<String>,
    parallel_tool_calls: Option<bool>,
    user: Option<String>,
    safety_identifier: Option<String>,
    service_tier: Option<String>,
    prompt_cache_key: Option<Value>,
    prompt_cache_retention: Option<Value>,
    include: Option<Vec<String>>,
    background: Option<bool>,
    stream_options: Option<Value>,
    truncation: Option<String>,
    /// Codex's own bookkeeping (session and turn ids): OpenAI gets it with
    /// the request as it came; it asks nothing of the answer.
    #[serde(default, rename = "client_metadata")]
    _client_metadata: Option<serde::de::IgnoredAny>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InInput {
    Text(String),
    Items(Vec<InItem>),
}

/// Any input item: the fields of every type byok translates.
#[derive(Deserialize)]
struct InItem {
    #[serde(rename = "type")]
    kind: Option<String>,
    role: Option<String>,
    /// A message's text or parts.
    content: Option<Value>,
    call_id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
    /// A function call's output: text or parts (other items' outputs have
    /// other shapes, carried by OpenAI alone).
    output: Option<Value>,
    summary: Option<Vec<InPart>>,
    /// An earlier output item's id and status, as SDKs send items back:
    /// bookkeeping, nothing to carry.
    #[serde(default, rename = "id")]
    _id: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "status")]
    _status: Option<serde::de::IgnoredAny>,
    /// OpenAI's encrypted reasoning: OpenAI gets it with the request as it
    /// came; it means nothing to other providers.
    #[serde(default, rename = "encrypted_content")]
    _encrypted_content: Option<serde::de::IgnoredAny>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    refusal: Option<String>,
    image_url: Option<String>,
    detail: Option<String>,
    /// An earlier answer's citations and log probabilities, sent back with it.
    #[serde(default, rename = "annotations")]
    _annotations: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "logprobs")]
    _logprobs: Option<serde::de::IgnoredAny>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InTool {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Value>,
    strict: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InToolChoice {
    Mode(String),
    Named {
        #[serde(rename = "type")]
        kind: String,
        name: Option<String>,
        #[serde(flatten)]
        extra: Extra,
    },
}

#[derive(Deserialize)]
struct InText {
    format: Option<InFormat>,
    verbosity: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InFormat {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    description: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InReasoning {
    effort: Option<String>,
    /// Whether to summarise the reasoning: a hint (other providers return
    /// their reasoning as it is, or none).
    #[serde(default, rename = "summary")]
    _summary: Option<serde::de::IgnoredAny>,
    #[serde(flatten)]
    extra: Extra,
}

/// What the door needs besides byok's request.
#[derive(Debug)]
pub(crate) struct ResponsesCall {
    pub(crate) request: ChatRequest,
    /// The model asked for; `None` for `auto`.
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
    /// What the response object repeats of the request.
    pub(crate) echo: Echo,
}

/// The request fields a response object repeats.
#[derive(Debug, Clone, Default)]
pub(crate) struct Echo {
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    parallel_tool_calls: Option<bool>,
    tool_choice: Value,
    tools: Value,
    text: Value,
    effort: Option<&'static str>,
}

/// Hosted tools billed per call, outside token prices: refused everywhere.
const BILLED_TOOLS: [&str; 4] = [
    "web_search",
    "file_search",
    "code_interpreter",
    "image_generation",
];

fn parts(content: Value, param: &str, only: &mut Only) -> Result<Vec<ContentPart>, Refusal> {
    let parts = match content {
        Value::String(text) => return Ok(vec![ContentPart::Text(text)]),
        Value::Array(parts) => parts,
        _ => {
            only.add(param.to_owned());
            return Ok(vec![]);
        }
    };
    let mut out = Vec::new();
    for part in parts {
        let Ok(part) = InPart::deserialize(&part) else {
            only.add(format!("{param}[]"));
            continue;
        };
        let here = format!("{param}[].{}", bounded(&part.kind));
        only.extra(&format!("{here}."), &part.extra);
        match part.kind.as_str() {
            "input_text" | "output_text" | "text" => {
                out.push(ContentPart::Text(part.text.unwrap_or_default()));
            }
            "refusal" => out.push(ContentPart::Text(part.refusal.unwrap_or_default())),
            "input_image" => match part.image_url {
                Some(url) => out.push(image_url(url, part.detail, &format!("{here}.image_url"))?),
                // A file uploaded to OpenAI: only OpenAI can read it.
                None => only.add(format!("{here}.file_id")),
            },
            // Files and whatever OpenAI adds next.
            _ => only.add(here),
        }
    }
    Ok(out)
}

/// The input items as byok's turns: leading system and developer messages
/// join the instructions; function calls join the assistant turn they
/// follow; reasoning summaries go with the next assistant turn.
fn turns(
    items: Vec<InItem>,
    system: &mut Vec<String>,
    only: &mut Only,
) -> Result<Vec<ChatMessage>, Refusal> {
    let mut turns: Vec<ChatMessage> = Vec::new();
    let mut reasoning: Option<String> = None;
    for item in items {
        let kind = item.kind.as_deref().unwrap_or("message");
        let param = format!("input[].{}", bounded(kind));
        only.extra(&format!("{param}."), &item.extra);
        match kind {
            "message" => {
                let role = item.role.as_deref().unwrap_or("user");
                let content = match item.content {
                    Some(content) => parts(content, &format!("{param}.content"), only)?,
                    None => return Err(invalid(&param, "a message has content")),
                };
                let role = match role {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "system" | "developer" if turns.is_empty() => {
                        system.push(
                            ChatMessage {
                                content,
                                ..ChatMessage::default()
                            }
                            .text_content(),
                        );
                        continue;
                    }
                    "system" | "developer" => Role::System,
                    _ => {
                        return Err(invalid(
                            "input[].role",
                            "a message's role is user, assistant, system or developer",
                        ));
                    }
                };
                let mut turn = ChatMessage {
                    role,
                    content,
                    ..ChatMessage::default()
                };
                if role == Role::Assistant {
                    turn.reasoning = reasoning.take();
                }
                turns.push(turn);
            }
            "function_call" => {
                let (Some(call_id), Some(name)) = (item.call_id, item.name) else {
                    return Err(invalid(&param, "a function_call has a call_id and a name"));
                };
                let (id, signature) = split_tool_call_id(&call_id);
                let call = ToolCall {
                    id,
                    name,
                    arguments: item.arguments.unwrap_or_else(|| "{}".to_owned()),
                    signature,
                };
                match turns.last_mut() {
                    Some(last) if last.role == Role::Assistant => last.tool_calls.push(call),
                    _ => turns.push(ChatMessage {
                        role: Role::Assistant,
                        tool_calls: vec![call],
                        reasoning: reasoning.take(),
                        ..ChatMessage::default()
                    }),
                }
            }
            "function_call_output" => {
                let call_id = item
                    .call_id
                    .ok_or_else(|| invalid(&param, "a function_call_output names its call_id"))?;
                let output = match item.output {
                    Some(output) => parts(output, &format!("{param}.output"), only)?,
                    None => vec![],
                };
                turns.push(ChatMessage {
                    role: Role::Tool,
                    content: output,
                    tool_call_id: Some(split_tool_call_id(&call_id).0),
                    ..ChatMessage::default()
                });
            }
            // OpenAI's reasoning: its summary text goes with the next
            // assistant turn (for providers that want reasoning back); the
            // encrypted content means something to OpenAI alone.
            "reasoning" => {
                for part in item.summary.unwrap_or_default() {
                    reasoning
                        .get_or_insert_with(String::new)
                        .push_str(part.text.as_deref().unwrap_or(""));
                }
            }
            _ => only.add(param),
        }
    }
    Ok(turns)
}

fn tools(tools: Vec<InTool>, only: &mut Only) -> Result<Vec<Tool>, Refusal> {
    let mut out = Vec::new();
    for tool in tools {
        let kind = tool.kind.as_str();
        if kind == "function" {
            only.extra("tools[].", &tool.extra);
            let name = tool
                .name
                .ok_or_else(|| invalid("tools[].name", "a function tool has a name"))?;
            out.push(Tool {
                name,
                description: tool.description,
                parameters: tool.parameters,
                strict: tool.strict,
            });
        } else if BILLED_TOOLS.iter().any(|b| kind.starts_with(b)) {
            return Err(Refusal::unsupported(
                &format!("tools[].type: {}", bounded(kind)),
                "hosted tools are billed per call, outside token prices, so byok could not report their cost",
            ));
        } else {
            // Custom (free-form) tools, local shell, computer use, MCP:
            // OpenAI's own tool types.
            only.add(format!("tools[].type: {}", bounded(kind)));
        }
    }
    Ok(out)
}

fn tool_choice(choice: InToolChoice, only: &mut Only) -> Result<ToolChoice, Refusal> {
    let bad = || {
        invalid(
            "tool_choice",
            "tool_choice is auto, none, required or {\"type\": \"function\", \"name\": ...}",
        )
    };
    match choice {
        InToolChoice::Mode(mode) => match mode.as_str() {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(bad()),
        },
        InToolChoice::Named {
            kind,
            name: Some(name),
            extra,
        } if kind == "function" => {
            only.extra("tool_choice.", &extra);
            Ok(ToolChoice::Function(name))
        }
        InToolChoice::Named { kind, .. } => {
            only.add(format!("tool_choice.type: {}", bounded(&kind)));
            Ok(ToolChoice::Auto)
        }
    }
}

fn text_format(text: InText, only: &mut Only) -> Result<Option<ResponseFormat>, Refusal> {
    only.extra("text.", &text.extra);
    if text.verbosity.as_ref().is_some_and(|v| !v.is_null()) {
        only.add("text.verbosity");
    }
    let Some(format) = text.format else {
        return Ok(None);
    };
    only.extra("text.format.", &format.extra);
    match format.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let (Some(name), Some(schema)) = (format.name, format.schema) else {
                return Err(invalid(
                    "text.format",
                    "a json_schema format has a name and a schema",
                ));
            };
            Ok(Some(ResponseFormat::JsonSchema(JsonSchema {
                name,
                description: format.description,
                schema,
                strict: format.strict,
            })))
        }
        _ => Err(invalid(
            "text.format.type",
            "the format is text, json_object or json_schema",
        )),
    }
}

impl ResponsesRequest {
    /// Parses a Responses body and translates it, keeping the body for OpenAI.
    pub(crate) fn parse(body: Value) -> Result<ResponsesCall, Refusal> {
        let request = Self::deserialize(&body).map_err(|_| {
            invalid(
                "body",
                "the body is not a Responses request: model and input (a string or a list of items)",
            )
        })?;
        let model = (request.model != "auto").then(|| request.model.clone());
        let stream = request.stream;
        let echo = Echo {
            instructions: request.instructions.clone(),
            max_output_tokens: request.max_output_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            parallel_tool_calls: request.parallel_tool_calls,
            tool_choice: body.get("tool_choice").cloned().unwrap_or(json!("auto")),
            tools: body.get("tools").cloned().unwrap_or(json!([])),
            text: body
                .get("text")
                .cloned()
                .unwrap_or(json!({"format": {"type": "text"}})),
            effort: None,
        };
        let (mut request, only, effort) = request.translate()?;
        request.native = Some(NativeRequest {
            api: NativeApi::OpenAiResponses,
            body: Arc::new(body),
            headers: vec![],
            only: only.0,
        });
        Ok(ResponsesCall {
            request,
            model,
            stream,
            echo: Echo { effort, ..echo },
        })
    }

    /// Refuses what no provider can honour; notes what only OpenAI can.
    fn check(&self, only: &mut Only) -> Result<(), Refusal> {
        only.extra("", &self.extra);
        if self.previous_response_id.is_some() {
            only.add("previous_response_id");
        }
        if self.store == Some(true) {
            only.add("store");
        }
        if self.truncation.as_deref().is_some_and(|t| t != "disabled") {
            only.add("truncation");
        }
        if let Some(tier) = self.service_tier.as_deref()
            && !matches!(tier, "auto" | "default")
        {
            return Err(Refusal::unsupported(
                "service_tier",
                "byok prices the standard tier; flex, scale and priority tiers bill differently",
            ));
        }
        if self.background == Some(true) {
            return Err(Refusal::unsupported(
                "background",
                "byok keeps no responses, so a background response could not be fetched (and its cost would be unknown)",
            ));
        }
        // What to return beyond the answer: log probabilities need OpenAI;
        // encrypted reasoning and the rest only OpenAI has to give.
        for item in self.include.iter().flatten() {
            if item.contains("logprobs") {
                only.add("include: message.output_text.logprobs");
            }
        }
        if self.max_output_tokens == Some(0) {
            return Err(invalid(
                "max_output_tokens",
                "max_output_tokens is at least 1",
            ));
        }
        Ok(())
    }

    fn translate(self) -> Result<(ChatRequest, Only, Option<&'static str>), Refusal> {
        let mut only = Only::default();
        self.check(&mut only)?;
        let reasoning = match self.reasoning {
            None => None,
            Some(reasoning) => {
                only.extra("reasoning.", &reasoning.extra);
                match reasoning.effort.as_deref() {
                    None => None,
                    Some(text) => Some(ReasoningEffort::parse(text).ok_or_else(|| {
                        invalid(
                            "reasoning.effort",
                            "reasoning.effort is none, minimal, low, medium, high or xhigh",
                        )
                    })?),
                }
            }
        };
        let response_format = match self.text {
            Some(text) => text_format(text, &mut only)?,
            None => None,
        };
        let mut system: Vec<String> = self.instructions.into_iter().collect();
        let messages = match self.input {
            Some(InInput::Text(text)) => vec![ChatMessage::text(Role::User, text)],
            Some(InInput::Items(items)) => turns(items, &mut system, &mut only)?,
            None => vec![],
        };
        if !messages
            .iter()
            .any(|m| matches!(m.role, Role::User | Role::Tool))
            && self.previous_response_id.is_none()
        {
            return Err(invalid(
                "input",
                "input must contain at least one user message or function call output",
            ));
        }
        let mut openai_hints = std::collections::BTreeMap::new();
        for (field, value) in [
            ("prompt_cache_key", self.prompt_cache_key),
            ("prompt_cache_retention", self.prompt_cache_retention),
        ] {
            if let Some(value) = value.filter(|v| !v.is_null()) {
                openai_hints.insert(field.to_owned(), value);
            }
        }
        let _ = self.stream_options;
        // With `user` set too, `safety_identifier` is OpenAI's abuse-monitoring
        // id: a hint, as on the Chat Completions door.
        let (user, safety) = match (self.user, self.safety_identifier) {
            (Some(user), safety) => (Some(user), safety),
            (None, safety) => (safety, None),
        };
        if let Some(id) = safety {
            openai_hints.insert("safety_identifier".to_owned(), Value::String(id));
        }
        let request = ChatRequest {
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages,
            temperature: self.temperature,
            top_p: self.top_p,
            max_output_tokens: self.max_output_tokens,
            tools: tools(self.tools.unwrap_or_default(), &mut only)?,
            tool_choice: self
                .tool_choice
                .map(|c| tool_choice(c, &mut only))
                .transpose()?,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format,
            reasoning,
            user,
            openai_hints,
            ..ChatRequest::default()
        };
        let effort = request.reasoning.map(ReasoningEffort::as_str);
        Ok((request, only, effort))
    }
}

/// The Responses API's usage block, with byok's cost beside it (as the Chat
/// Completions door adds it).
fn usage(usage: &Usage, report: Option<&CostReport>) -> Value {
    let mut out = json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens.saturating_add(usage.output_tokens),
    });
    if let Some(report) = report {
        if let Some(picodollars) = report.picodollars {
            out["cost"] = serde_json::from_str::<Value>(
                &byok_router::Money::from_picodollars(picodollars).to_usd_string(),
            )
            .unwrap_or(Value::Null);
        }
        out["cost_source"] = json!(report.source.as_str());
    }
    out
}

/// A message output item.
fn message_item(id: &str, text: &str, refusal: bool, status: &str) -> Value {
    let part = if refusal {
        json!({"type": "refusal", "refusal": text})
    } else {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    };
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": [part]})
}

fn call_item(response_id: &str, index: usize, call: &ToolCall, status: &str) -> Value {
    json!({
        "type": "function_call",
        "id": format!("fc_{}_{index}", response_id.trim_start_matches("resp_")),
        "call_id": id_safe_tool_call_id(&call.id, call.signature.as_deref()),
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    })
}

/// The response object around `output`.
fn response_object(
    id: &str,
    created: i64,
    model: &str,
    echo: &Echo,
    (status, finish): (&str, Option<FinishReason>),
    output: &[Value],
    usage: &Value,
) -> Value {
    let incomplete = match finish {
        Some(FinishReason::Length) => json!({"reason": "max_output_tokens"}),
        Some(FinishReason::ContentFilter) => json!({"reason": "content_filter"}),
        _ => Value::Null,
    };
    let status = if status == "completed" && !incomplete.is_null() {
        "incomplete"
    } else {
        status
    };
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": echo.instructions,
        "max_output_tokens": echo.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": echo.parallel_tool_calls.unwrap_or(true),
        "previous_response_id": null,
        "reasoning": {"effort": echo.effort, "summary": null},
        "store": false,
        "temperature": echo.temperature,
        "text": echo.text,
        "tool_choice": echo.tool_choice,
        "tools": echo.tools,
        "top_p": echo.top_p,
        "truncation": "disabled",
        "usage": usage,
        "metadata": {},
    })
}

/// A whole answer as a response object: OpenAI's own, as it came, or
/// another provider's translated (byok keeps none: `store` is false).
pub(crate) fn response(
    (id, created): (&str, i64),
    echo: &Echo,
    answer: &ChatResponse,
    report: Option<&CostReport>,
) -> Value {
    if let Some(native) = &answer.native {
        return native.clone();
    }
    let choice = answer.choices.first().cloned().unwrap_or_default();
    let mut output = Vec::new();
    let message_id = format!("msg_{}", id.trim_start_matches("resp_"));
    if let Some(refusal) = &choice.refusal {
        output.push(message_item(&message_id, refusal, true, "completed"));
    } else if !choice.text.is_empty() || choice.tool_calls.is_empty() {
        output.push(message_item(&message_id, &choice.text, false, "completed"));
    }
    output.extend(
        choice
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| call_item(id, i, c, "completed")),
    );
    let counted = report.map(|r| r.usage).or(answer.usage).unwrap_or_default();
    response_object(
        id,
        created,
        &answer.model,
        echo,
        ("completed", choice.finish_reason),
        &output,
        &usage(&counted, report),
    )
}

/// Writes the Responses API's events for a translated stream: text streams
/// as it comes; function calls go out whole once the answer has them (other
/// providers may interleave parallel calls).
pub(crate) struct EventWriter {
    id: String,
    created: i64,
    model: String,
    echo: Echo,
    sequence: u64,
    started: bool,
    /// The text so far, once the message item is open.
    text: Option<String>,
    refusal: bool,
    calls: Vec<ToolCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    report: Option<CostReport>,
}

impl EventWriter {
    pub(crate) fn new(id: String, created: i64, model: String, echo: Echo) -> Self {
        Self {
            id,
            created,
            model,
            echo,
            sequence: 0,
            started: false,
            text: None,
            refusal: false,
            calls: Vec::new(),
            finish: None,
            usage: None,
            report: None,
        }
    }

    fn event(&mut self, out: &mut String, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        let _ = write!(out, "event: {kind}\ndata: {data}\n\n");
    }

    fn message_id(&self) -> String {
        format!("msg_{}", self.id.trim_start_matches("resp_"))
    }

    fn object(&self, status: &str, output: &[Value]) -> Value {
        let counted = self.usage.unwrap_or_default();
        let usage = if status == "in_progress" {
            Value::Null
        } else {
            usage(&counted, self.report.as_ref())
        };
        response_object(
            &self.id,
            self.created,
            &self.model,
            &self.echo,
            (status, self.finish),
            output,
            &usage,
        )
    }

    fn start(&mut self, out: &mut String) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let response = self.object("in_progress", &[]);
        self.event(
            out,
            "response.created",
            json!({"response": response.clone()}),
        );
        self.event(out, "response.in_progress", json!({"response": response}));
    }

    fn text(&mut self, delta: &str, out: &mut String) {
        let item_id = self.message_id();
        if self.text.is_none() {
            self.text = Some(String::new());
            let item = json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []});
            self.event(
                out,
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            );
            let part = if self.refusal {
                json!({"type": "refusal", "refusal": ""})
            } else {
                json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            };
            self.event(
                out,
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
            );
        }
        if let Some(text) = self.text.as_mut() {
            text.push_str(delta);
        }
        let kind = if self.refusal {
            "response.refusal.delta"
        } else {
            "response.output_text.delta"
        };
        self.event(
            out,
            kind,
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta, "logprobs": []}),
        );
    }

    /// The events one piece of the answer makes.
    pub(crate) fn chunk(&mut self, chunk: ChatChunk) -> String {
        let mut out = String::new();
        self.start(&mut out);
        match chunk {
            ChatChunk::Text(text) if !text.is_empty() => self.text(&text, &mut out),
            ChatChunk::Refusal(text) => {
                if self.text.is_none() {
                    self.refusal = true;
                }
                self.text(&text, &mut out);
            }
            ChatChunk::ToolCall(delta) => add_tool_delta(&mut self.calls, delta),
            ChatChunk::Finish(reason) => self.finish = Some(reason),
            ChatChunk::Usage(counted) => self.usage = Some(counted),
            ChatChunk::Cost(report) => {
                self.usage = Some(report.usage);
                self.report = Some(report);
            }
            ChatChunk::Model(model) => self.model = model,
            _ => {}
        }
        out
    }

    /// The end: the message item closed, the function calls, and
    /// `response.completed` with the whole response.
    pub(crate) fn end(&mut self) -> String {
        let mut out = String::new();
        self.start(&mut out);
        let mut output = Vec::new();
        if let Some(text) = self.text.take() {
            let item_id = self.message_id();
            let item = message_item(&item_id, &text, self.refusal, "completed");
            let part = item["content"][0].clone();
            if self.refusal {
                self.event(
                    &mut out,
                    "response.refusal.done",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0, "refusal": text}),
                );
            } else {
                self.event(
                    &mut out,
                    "response.output_text.done",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
                );
            }
            self.event(
                &mut out,
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
            );
            self.event(
                &mut out,
                "response.output_item.done",
                json!({"output_index": 0, "item": item.clone()}),
            );
            output.push(item);
        }
        for (i, call) in std::mem::take(&mut self.calls).into_iter().enumerate() {
            let at = output.len();
            let mut call = call;
            if call.arguments.trim().is_empty() {
                "{}".clone_into(&mut call.arguments);
            }
            let added = call_item(&self.id, i, &call, "in_progress");
            let item_id = added["id"].clone();
            let mut empty = added.clone();
            empty["arguments"] = json!("");
            self.event(
                &mut out,
                "response.output_item.added",
                json!({"output_index": at, "item": empty}),
            );
            self.event(
                &mut out,
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": at, "delta": call.arguments}),
            );
            self.event(
                &mut out,
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": at, "arguments": call.arguments}),
            );
            let done = call_item(&self.id, i, &call, "completed");
            self.event(
                &mut out,
                "response.output_item.done",
                json!({"output_index": at, "item": done.clone()}),
            );
            output.push(done);
        }
        let response = self.object("completed", &output);
        let kind = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.event(&mut out, kind, json!({"response": response}));
        out
    }
}

impl crate::routes::gateway::DoorWriter for EventWriter {
    fn chunk(&mut self, chunk: ChatChunk) -> String {
        EventWriter::chunk(self, chunk)
    }

    fn end(&mut self) -> String {
        EventWriter::end(self)
    }

    /// A failure after the stream began.
    fn failed(&mut self, error: &byok_providers::ProviderError) -> String {
        let mut out = String::new();
        self.event(
            &mut out,
            "error",
            json!({"code": error.code(), "message": error.to_string(), "param": null}),
        );
        out
    }

    fn is_failure_event(name: &str) -> bool {
        name == "error" || name == "response.failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_translate_into_turns() {
        let call = ResponsesRequest::parse(json!({"model": "auto", "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use tools."},
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "need tool"}], "encrypted_content": "enc"},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "21C"}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low", "summary": "auto"}, "store": false}))
        .unwrap();
        let request = &call.request;
        assert_eq!(request.system.as_deref(), Some("Be brief.\n\nUse tools."));
        let roles: Vec<Role> = request.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool]);
        assert_eq!(request.messages[1].reasoning.as_deref(), Some("need tool"));
        assert_eq!(request.messages[1].tool_calls[0].id, "call_1");
        assert_eq!(request.reasoning, Some(ReasoningEffort::Low));
        assert!(matches!(
            request.response_format,
            Some(ResponseFormat::JsonSchema(_))
        ));
        // Reasoning items, ids and encrypted content need nothing of OpenAI.
        let only = &request.native.as_ref().unwrap().only;
        assert!(only.is_empty(), "{only:?}");
    }

    #[test]
    fn what_needs_openai_is_named_for_the_others() {
        let call = ResponsesRequest::parse(json!({"model": "auto", "input": "hi",
            "previous_response_id": "resp_1", "store": true,
            "tools": [{"type": "custom", "name": "apply_patch"}]}))
        .unwrap();
        let only = &call.request.native.as_ref().unwrap().only;
        for field in ["previous_response_id", "store", "tools[].type: custom"] {
            assert!(only.iter().any(|f| f == field), "{field} in {only:?}");
        }
        let refusal = ResponsesRequest::parse(json!({"model": "auto", "input": "hi",
            "tools": [{"type": "web_search_preview"}]}))
        .unwrap_err();
        assert_eq!(
            refusal.param.as_deref(),
            Some("tools[].type: web_search_preview")
        );
    }

    #[test]
    fn a_translated_stream_follows_the_event_order() {
        let mut writer = EventWriter::new("resp_1".to_owned(), 0, "m".to_owned(), Echo::default());
        let mut out = writer.chunk(ChatChunk::Text("Hi".to_owned()));
        out.push_str(&writer.chunk(ChatChunk::ToolCall(byok_core::ToolCallDelta {
            index: 0,
            id: Some("call_1".to_owned()),
            name: Some("f".to_owned()),
            arguments: "{}".to_owned(),
            signature: None,
        })));
        out.push_str(&writer.end());
        let names: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let sequence: Vec<u64> = out
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| {
                serde_json::from_str::<Value>(d).unwrap()["sequence_number"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(sequence, (0..13).collect::<Vec<u64>>());
    }
}
