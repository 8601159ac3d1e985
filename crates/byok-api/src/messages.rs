//! Anthropic's Messages API (`POST /v1/messages`), the gateway's door for
//! Claude Code and Anthropic's SDKs: the request, the answer and the stream's
//! named events, typed, and their translation to and from byok's
//! provider-neutral types.
//!
//! The client's request is kept as it came. When the route lands on
//! Anthropic it goes through intact (cache markers, documents, signed
//! thinking blocks, every field, even ones byok does not name) and Anthropic's
//! answer comes back as it came. When the route lands on another provider
//! the request is translated; a field only Anthropic carries makes every
//! other provider refuse it (the 400 names the field), and the answer is
//! translated back into Anthropic's shapes, tool calls included.

use std::sync::Arc;

use base64::Engine as _;
use byok_core::{
    ChatChunk, ChatMessage, ChatRequest, ChatResponse, ContentPart, CostReport, FinishReason,
    ImageSource, JsonSchema, NativeApi, NativeRequest, ReasoningEffort, ResponseFormat, Role, Tool,
    ToolCall, ToolChoice, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::openai::{
    Extra, IMAGE_TYPES, Only, Refusal, add_tool_delta, bounded, id_safe_tool_call_id, invalid,
    split_tool_call_id,
};

/// Betas byok passes to Anthropic that ask nothing of other providers: they
/// tune how Anthropic streams, caches or thinks, name the client, or belong
/// to fields that only Anthropic is sent anyway.
pub const BETAS_PASSED: &[&str] = &[
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
    "token-efficient-tools-2025-02-19",
    "prompt-caching-2024-07-31",
    "extended-cache-ttl-2025-04-11",
    "output-128k-2025-02-19",
    "context-management-2025-06-27",
    "files-api-2025-04-14",
    "computer-use-2025-01-24",
    "computer-use-2025-11-24",
    "structured-outputs-2025-11-13",
    "effort-2025-11-24",
    "advanced-tool-use-2025-11-20",
    "thinking-token-count-2026-05-13",
    "prompt-caching-scope-2026-01-05",
];

/// Betas that only say how a client signs in to Anthropic itself; byok calls
/// Anthropic with the user's saved key, so they do not apply and are not sent.
const BETAS_SIGN_IN: &[&str] = &["oauth-2025-04-20"];

/// Anthropic's Messages request. Unknown fields are not refused here: they
/// go to Anthropic as they came (Anthropic judges them), and every other
/// provider refuses the request naming them.
#[derive(Deserialize)]
pub(crate) struct MessagesRequest {
    model: String,
    max_tokens: Option<u32>,
    messages: Vec<InMessage>,
    system: Option<InSystem>,
    #[serde(default)]
    stream: bool,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<Value>,
    stop_sequences: Option<Vec<String>>,
    tools: Option<Vec<InTool>>,
    tool_choice: Option<InToolChoice>,
    thinking: Option<InThinking>,
    metadata: Option<InMetadata>,
    service_tier: Option<String>,
    output_config: Option<InOutputConfig>,
    inference_geo: Option<String>,
    /// Anthropic's server-side trimming of old thinking and tool results: it
    /// only saves tokens, so other providers get the whole conversation.
    #[serde(default, rename = "context_management")]
    _context_management: Option<serde::de::IgnoredAny>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InSystem {
    Text(String),
    Blocks(Vec<InBlock>),
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: InContent,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Blocks(Vec<InBlock>),
}

/// Any content block: the fields of every type byok translates; a block's
/// type says which it has.
#[derive(Deserialize)]
struct InBlock {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    /// An object for images and documents; other blocks (search results)
    /// have other shapes, carried by Anthropic alone.
    source: Option<Value>,
    id: Option<String>,
    name: Option<String>,
    input: Option<Value>,
    tool_use_id: Option<String>,
    /// A tool result's text or blocks; other blocks' content has other shapes.
    content: Option<Value>,
    is_error: Option<bool>,
    thinking: Option<String>,
    /// Thinking's signature and redacted thinking's data: Anthropic's own,
    /// which it gets with the request as it came; nothing to other providers.
    #[serde(default, rename = "signature")]
    _signature: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "data")]
    _data: Option<serde::de::IgnoredAny>,
    /// A prompt-cache marker: Anthropic gets it with the request; the other
    /// providers cache without markers.
    #[serde(default, rename = "cache_control")]
    _cache_control: Option<serde::de::IgnoredAny>,
    citations: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InSource {
    #[serde(rename = "type")]
    kind: String,
    media_type: Option<String>,
    data: Option<String>,
    url: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InTool {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: String,
    description: Option<String>,
    input_schema: Option<Value>,
    strict: Option<bool>,
    /// A prompt-cache marker (see [`InBlock`]).
    #[serde(default, rename = "cache_control")]
    _cache_control: Option<serde::de::IgnoredAny>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InToolChoice {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    disable_parallel_tool_use: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InThinking {
    #[serde(rename = "type")]
    kind: String,
    budget_tokens: Option<u32>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InMetadata {
    user_id: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InOutputConfig {
    format: Option<InFormat>,
    effort: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InFormat {
    #[serde(rename = "type")]
    kind: String,
    schema: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

/// What the door needs besides byok's request.
#[derive(Debug)]
pub(crate) struct MessagesCall {
    pub(crate) request: ChatRequest,
    /// The model asked for; `None` for `auto`.
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
}

/// Whether `text` has the shape of a beta's name: short lowercase words
/// and numbers joined by dashes (`claude-code-20250219`,
/// `interleaved-thinking-2025-05-14`), at most 64 characters. Keys have
/// long runs no beta name has.
fn is_beta_name(text: &str) -> bool {
    let words: Vec<&str> = text.split('-').collect();
    text.len() <= 64
        && words.len() >= 2
        && words.iter().all(|w| {
            (1..=16).contains(&w.len())
                && w.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The `anthropic-beta` values: passed to Anthropic, or refused by name.
/// Betas byok does not know go to Anthropic as they came (it judges them)
/// and make every other provider refuse the request, naming them.
fn betas(header: Option<&str>, only: &mut Only) -> Result<Vec<String>, Refusal> {
    let mut passed = Vec::new();
    for beta in header
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        // Anything not shaped like a beta's name (a pasted key, say) is
        // refused without being repeated.
        if !is_beta_name(beta) {
            return Err(Refusal::unsupported(
                "anthropic-beta",
                "a value is not a beta name (lowercase letters, digits and dashes)",
            ));
        }
        if BETAS_PASSED.contains(&beta) {
            passed.push(beta.to_owned());
        } else if !BETAS_SIGN_IN.contains(&beta) {
            let why = if beta.starts_with("context-1m") {
                "byok prices the standard context window; 1M-token requests bill at long-context rates it does not price"
            } else if beta.starts_with("web-search")
                || beta.starts_with("code-execution")
                || beta.starts_with("mcp-client")
                || beta.starts_with("skills")
            {
                "server-side tools are billed per use, outside token prices, so byok could not report their cost"
            } else {
                only.add(format!("anthropic-beta: {beta}"));
                passed.push(beta.to_owned());
                continue;
            };
            return Err(Refusal::unsupported(
                &format!("anthropic-beta: {beta}"),
                why,
            ));
        }
    }
    Ok(passed)
}

fn image(source: &Value, param: &str, only: &mut Only) -> Result<Option<ContentPart>, Refusal> {
    let Ok(source) = InSource::deserialize(source) else {
        only.add(format!("{param}.source"));
        return Ok(None);
    };
    only.extra(&format!("{param}.source."), &source.extra);
    let source = match (
        source.kind.as_str(),
        source.media_type,
        source.data,
        source.url,
    ) {
        ("base64", Some(media_type), Some(data), None) => {
            if !IMAGE_TYPES.contains(&media_type.as_str()) {
                return Err(invalid(
                    &format!("{param}.source.media_type"),
                    "images must be image/png, image/jpeg, image/gif or image/webp",
                ));
            }
            if base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .is_err()
            {
                return Err(invalid(
                    &format!("{param}.source.data"),
                    "the image's base64 does not decode",
                ));
            }
            ImageSource::Base64 { media_type, data }
        }
        ("url", None, None, Some(url))
            if url.starts_with("https://") && url::Url::parse(&url).is_ok() =>
        {
            ImageSource::Url(url)
        }
        ("url", ..) => {
            return Err(invalid(
                &format!("{param}.source.url"),
                "an image URL must be https://",
            ));
        }
        (other, ..) => {
            // Files uploaded to Anthropic: only Anthropic can read them.
            only.add(format!("{param}.source.type: {}", bounded(other)));
            return Ok(None);
        }
    };
    Ok(Some(ContentPart::Image {
        source,
        detail: None,
    }))
}

/// A user turn's blocks: tool results become tool turns (first, as the
/// calls they answer came just before), the rest one user turn.
fn user_turn(content: InContent, only: &mut Only) -> Result<Vec<ChatMessage>, Refusal> {
    let blocks = match content {
        InContent::Text(text) => return Ok(vec![ChatMessage::text(Role::User, text)]),
        InContent::Blocks(blocks) => blocks,
    };
    let mut turns = Vec::new();
    let mut parts = Vec::new();
    for block in blocks {
        let param = format!("messages[].content[].{}", bounded(&block.kind));
        only.extra(&format!("{param}."), &block.extra);
        if block.citations.as_ref().is_some_and(|c| !c.is_null()) {
            only.add(format!("{param}.citations"));
        }
        match block.kind.as_str() {
            "text" => parts.push(ContentPart::Text(block.text.unwrap_or_default())),
            "image" => {
                let source = block
                    .source
                    .ok_or_else(|| invalid(&param, "an image block has a source"))?;
                parts.extend(image(&source, &param, only)?);
            }
            "tool_result" => {
                let id = block
                    .tool_use_id
                    .ok_or_else(|| invalid(&param, "a tool_result names its tool_use_id"))?;
                let (id, _) = split_tool_call_id(&id);
                let mut content = match block.content {
                    None | Some(Value::Null) => vec![],
                    Some(Value::String(text)) => vec![ContentPart::Text(text)],
                    Some(Value::Array(inner)) => tool_result_parts(inner, &param, only)?,
                    Some(_) => {
                        only.add(format!("{param}.content"));
                        vec![]
                    }
                };
                if block.is_error == Some(true) {
                    // Anthropic's error flag, said in words for the others.
                    content.insert(0, ContentPart::Text("The tool call failed: ".to_owned()));
                }
                turns.push(ChatMessage {
                    role: Role::Tool,
                    content,
                    tool_call_id: Some(id),
                    ..ChatMessage::default()
                });
            }
            // Documents, search results and whatever Anthropic adds next.
            _ => only.add(param),
        }
    }
    if !parts.is_empty() {
        turns.push(ChatMessage {
            role: Role::User,
            content: parts,
            ..ChatMessage::default()
        });
    }
    Ok(turns)
}

/// A tool result's blocks: text and images translated; any other block
/// (search results, documents) carried by Anthropic alone.
fn tool_result_parts(
    inner: Vec<Value>,
    param: &str,
    only: &mut Only,
) -> Result<Vec<ContentPart>, Refusal> {
    let mut parts = Vec::new();
    for value in inner {
        let Ok(inner) = InBlock::deserialize(&value) else {
            only.add(format!("{param}.content[]"));
            continue;
        };
        let param = format!("{param}.content[].{}", bounded(&inner.kind));
        only.extra(&format!("{param}."), &inner.extra);
        match (inner.kind.as_str(), inner.source) {
            ("text", _) => parts.push(ContentPart::Text(inner.text.unwrap_or_default())),
            ("image", Some(source)) => parts.extend(image(&source, &param, only)?),
            _ => only.add(param),
        }
    }
    Ok(parts)
}

/// A system turn inside the conversation: its text blocks.
fn system_turn(content: InContent) -> Result<ChatMessage, Refusal> {
    let content = match content {
        InContent::Text(text) => vec![ContentPart::Text(text)],
        InContent::Blocks(blocks) => blocks
            .into_iter()
            .map(|b| {
                if b.kind == "text" {
                    Ok(ContentPart::Text(b.text.unwrap_or_default()))
                } else {
                    Err(invalid(
                        "messages[].content[].type",
                        "a system turn has text blocks",
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(ChatMessage {
        role: Role::System,
        content,
        ..ChatMessage::default()
    })
}

/// An assistant turn: text, tool calls, and its reasoning (for providers
/// that want it back); signed and redacted thinking mean something to
/// Anthropic alone, which gets the request as it came.
fn assistant_turn(content: InContent, only: &mut Only) -> Result<ChatMessage, Refusal> {
    let blocks = match content {
        InContent::Text(text) => return Ok(ChatMessage::text(Role::Assistant, text)),
        InContent::Blocks(blocks) => blocks,
    };
    let mut turn = ChatMessage {
        role: Role::Assistant,
        ..ChatMessage::default()
    };
    for block in blocks {
        let param = format!("messages[].content[].{}", bounded(&block.kind));
        only.extra(&format!("{param}."), &block.extra);
        if block.citations.as_ref().is_some_and(|c| !c.is_null()) {
            only.add(format!("{param}.citations"));
        }
        match block.kind.as_str() {
            "text" => turn
                .content
                .push(ContentPart::Text(block.text.unwrap_or_default())),
            "tool_use" => {
                let (Some(id), Some(name)) = (block.id, block.name) else {
                    return Err(invalid(&param, "a tool_use block has an id and a name"));
                };
                let (id, signature) = split_tool_call_id(&id);
                let input = block.input.unwrap_or_else(|| json!({}));
                if !input.is_object() {
                    return Err(invalid(
                        &format!("{param}.input"),
                        "a tool_use block's input is an object",
                    ));
                }
                turn.tool_calls.push(ToolCall {
                    id,
                    name,
                    arguments: input.to_string(),
                    signature,
                });
            }
            "thinking" => {
                if let Some(text) = block.thinking {
                    turn.reasoning
                        .get_or_insert_with(String::new)
                        .push_str(&text);
                }
            }
            "redacted_thinking" => {}
            _ => only.add(param),
        }
    }
    Ok(turn)
}

fn system(system: InSystem, only: &mut Only) -> Result<String, Refusal> {
    match system {
        InSystem::Text(text) => Ok(text),
        InSystem::Blocks(blocks) => {
            let mut texts = Vec::new();
            for block in blocks {
                if block.kind != "text" {
                    return Err(invalid("system[].type", "system blocks are text blocks"));
                }
                only.extra("system[].", &block.extra);
                if block.citations.as_ref().is_some_and(|c| !c.is_null()) {
                    only.add("system[].citations");
                }
                texts.push(block.text.unwrap_or_default());
            }
            Ok(texts.join("\n\n"))
        }
    }
}

fn tools(tools: Vec<InTool>, only: &mut Only) -> Result<Vec<Tool>, Refusal> {
    let mut out = Vec::new();
    for tool in tools {
        match tool.kind.as_deref() {
            None | Some("custom") => {
                only.extra("tools[].", &tool.extra);
                out.push(Tool {
                    name: tool.name,
                    description: tool.description,
                    parameters: tool.input_schema,
                    strict: tool.strict,
                });
            }
            Some(kind) if kind.starts_with("web_search") || kind.starts_with("code_execution") => {
                return Err(Refusal::unsupported(
                    &format!("tools[].type: {}", bounded(kind)),
                    "server-side tools are billed per use, outside token prices, so byok could not report their cost",
                ));
            }
            // Anthropic-defined tools (bash, text editor, computer, memory,
            // web fetch): their schemas are Anthropic's own.
            Some(kind) => only.add(format!("tools[].type: {}", bounded(kind))),
        }
    }
    Ok(out)
}

fn tool_choice(
    choice: InToolChoice,
    only: &mut Only,
) -> Result<(ToolChoice, Option<bool>), Refusal> {
    only.extra("tool_choice.", &choice.extra);
    let parallel = choice.disable_parallel_tool_use.map(|d| !d);
    let choice = match (choice.kind.as_str(), choice.name) {
        ("auto", _) => ToolChoice::Auto,
        ("none", _) => ToolChoice::None,
        ("any", _) => ToolChoice::Required,
        ("tool", Some(name)) => ToolChoice::Function(name),
        _ => {
            return Err(invalid(
                "tool_choice",
                "tool_choice is {\"type\": \"auto\"}, \"any\", \"none\" or {\"type\": \"tool\", \"name\": ...}",
            ));
        }
    };
    Ok((choice, parallel))
}

/// The effort a thinking budget stands for, for providers that take an
/// effort instead of a budget.
fn effort_of_budget(budget: u32) -> ReasoningEffort {
    match budget {
        0..=2048 => ReasoningEffort::Low,
        2049..=8192 => ReasoningEffort::Medium,
        8193..=24_576 => ReasoningEffort::High,
        _ => ReasoningEffort::Xhigh,
    }
}

fn effort(text: &str) -> Result<ReasoningEffort, Refusal> {
    match text {
        "low" => Ok(ReasoningEffort::Low),
        "medium" => Ok(ReasoningEffort::Medium),
        "high" => Ok(ReasoningEffort::High),
        "max" => Ok(ReasoningEffort::Xhigh),
        _ => Err(invalid(
            "output_config.effort",
            "effort is low, medium, high or max",
        )),
    }
}

/// The reasoning a request asks for, as `(required, hint)`: enabled
/// thinking with a budget requires a model that reasons; adaptive thinking
/// and an effort alone leave it to the model (a hint, applied where the
/// chosen model reasons).
fn reasoning(
    thinking: Option<InThinking>,
    effort_asked: Option<ReasoningEffort>,
    only: &mut Only,
) -> Result<(Option<ReasoningEffort>, Option<ReasoningEffort>), Refusal> {
    let Some(thinking) = thinking else {
        return Ok((None, effort_asked));
    };
    only.extra("thinking.", &thinking.extra);
    match thinking.kind.as_str() {
        "enabled" => {
            let budget = thinking.budget_tokens.ok_or_else(|| {
                invalid(
                    "thinking.budget_tokens",
                    "enabled thinking has a budget_tokens",
                )
            })?;
            Ok((Some(effort_asked.unwrap_or(effort_of_budget(budget))), None))
        }
        "adaptive" => Ok((None, Some(effort_asked.unwrap_or(ReasoningEffort::Medium)))),
        "disabled" => Ok((None, None)),
        _ => Err(invalid(
            "thinking.type",
            "thinking is enabled, adaptive or disabled",
        )),
    }
}

/// An end-user id other providers accept: as it came when short, else its
/// SHA-256 (Claude Code sends a JSON document; OpenAI takes 64 characters).
fn end_user_id(id: String) -> String {
    use sha2::Digest as _;
    if id.len() <= 64 {
        return id;
    }
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex = digest.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    });
    format!("sha256:{}", &hex[..57])
}

/// `output_config`: a JSON Schema for the answer, and an effort.
fn output_config(
    config: InOutputConfig,
    only: &mut Only,
) -> Result<(Option<ResponseFormat>, Option<ReasoningEffort>), Refusal> {
    only.extra("output_config.", &config.extra);
    let effort_asked = config.effort.as_deref().map(effort).transpose()?;
    let Some(format) = config.format else {
        return Ok((None, effort_asked));
    };
    only.extra("output_config.format.", &format.extra);
    match (format.kind.as_str(), format.schema) {
        ("json_schema", Some(schema)) => Ok((
            Some(ResponseFormat::JsonSchema(JsonSchema {
                name: "response".to_owned(),
                description: None,
                schema,
                strict: Some(true),
            })),
            effort_asked,
        )),
        _ => Err(invalid(
            "output_config.format",
            "the output format is {\"type\": \"json_schema\", \"schema\": ...}",
        )),
    }
}

impl MessagesRequest {
    /// Parses a Messages body (`count_tokens` needs no `max_tokens`) and
    /// translates it, keeping the body for Anthropic.
    pub(crate) fn parse(
        body: Value,
        beta_header: Option<&str>,
        count_only: bool,
    ) -> Result<MessagesCall, Refusal> {
        let request = Self::deserialize(&body).map_err(|_| {
            invalid(
                "body",
                "the body is not a Messages request: model, max_tokens and messages (user and assistant turns of text or content blocks)",
            )
        })?;
        let mut unknown_betas = Only::default();
        let headers = match betas(beta_header, &mut unknown_betas)? {
            passed if passed.is_empty() => vec![],
            passed => vec![("anthropic-beta".to_owned(), passed.join(","))],
        };
        let model = (request.model != "auto").then(|| request.model.clone());
        let stream = request.stream;
        let (mut request, mut only) = request.translate(count_only)?;
        for beta in unknown_betas.0 {
            only.add(beta);
        }
        request.native = Some(NativeRequest {
            api: NativeApi::AnthropicMessages,
            body: Arc::new(body),
            headers,
            only: only.0,
        });
        Ok(MessagesCall {
            request,
            model,
            stream,
        })
    }

    fn translate(self, count_only: bool) -> Result<(ChatRequest, Only), Refusal> {
        let mut only = Only::default();
        only.extra("", &self.extra);
        if self.max_tokens.is_none() && !count_only {
            return Err(invalid("max_tokens", "max_tokens: Field required"));
        }
        if self.max_tokens == Some(0) {
            return Err(invalid("max_tokens", "max_tokens is at least 1"));
        }
        if self.top_k.as_ref().is_some_and(|v| !v.is_null()) {
            only.add("top_k");
        }
        if let Some(tier) = self.service_tier.as_deref()
            && !matches!(tier, "auto" | "standard_only")
        {
            return Err(Refusal::unsupported(
                "service_tier",
                "byok prices the standard tier; send auto or standard_only",
            ));
        }
        if let Some(geo) = self.inference_geo.as_deref()
            && geo != "global"
        {
            return Err(Refusal::unsupported(
                "inference_geo",
                "byok prices global inference; inference held in one region bills more",
            ));
        }
        let (response_format, effort_asked) = match self.output_config {
            Some(config) => output_config(config, &mut only)?,
            None => (None, None),
        };
        let (reasoning, reasoning_hint) = reasoning(self.thinking, effort_asked, &mut only)?;
        let mut user = None;
        if let Some(metadata) = self.metadata {
            only.extra("metadata.", &metadata.extra);
            user = metadata.user_id.map(end_user_id);
        }
        let system = self.system.map(|s| system(s, &mut only)).transpose()?;
        if self.messages.is_empty() {
            return Err(invalid("messages", "messages has at least one turn"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for message in self.messages {
            only.extra("messages[].", &message.extra);
            match message.role.as_str() {
                "user" => messages.extend(user_turn(message.content, &mut only)?),
                "assistant" => messages.push(assistant_turn(message.content, &mut only)?),
                // Instructions in the middle of the conversation (as Claude
                // Code sends them): later instructions for every provider.
                "system" => messages.push(system_turn(message.content)?),
                _ => {
                    return Err(invalid(
                        "messages[].role",
                        "a turn's role is user, assistant or system",
                    ));
                }
            }
        }
        let (tool_choice, parallel_tool_calls) = match self.tool_choice {
            Some(choice) => {
                let (choice, parallel) = tool_choice(choice, &mut only)?;
                (Some(choice), parallel)
            }
            None => (None, None),
        };
        let request = ChatRequest {
            system: system.filter(|s| !s.is_empty()),
            messages,
            temperature: self.temperature,
            top_p: self.top_p,
            max_output_tokens: self.max_tokens,
            output_ceiling: true,
            stop: self.stop_sequences.unwrap_or_default(),
            tools: tools(self.tools.unwrap_or_default(), &mut only)?,
            tool_choice,
            parallel_tool_calls,
            response_format,
            reasoning,
            prefer_reasoning: reasoning_hint.is_some(),
            reasoning_hint,
            user,
            ..ChatRequest::default()
        };
        Ok((request, only))
    }
}

/// Anthropic's name for why an answer ended.
fn stop_reason(reason: Option<FinishReason>) -> &'static str {
    match reason {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Stop | FinishReason::Other) | None => "end_turn",
    }
}

/// Anthropic's usage block: its `input_tokens` leaves out cache reads and writes.
fn usage(usage: &Usage) -> Value {
    let cached = usage.cached_input_tokens;
    let written = usage.cache_write_tokens;
    json!({
        "input_tokens": usage.input_tokens.saturating_sub(cached.saturating_add(written)),
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    })
}

/// A tool call as a `tool_use` block; provider state the call needs next
/// turn rides in its id.
fn tool_use(call: &ToolCall) -> Value {
    let input = serde_json::from_str::<Value>(&call.arguments)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    json!({
        "type": "tool_use",
        "id": id_safe_tool_call_id(&call.id, call.signature.as_deref()),
        "name": call.name,
        "input": input,
    })
}

/// A whole answer in Anthropic's shape: Anthropic's own, as it came, or
/// another provider's translated. Reasoning from other providers has no
/// Anthropic signature, so it is not returned as a thinking block (sent
/// back, Anthropic would refuse it).
pub(crate) fn message(id: &str, response: &ChatResponse, report: Option<&CostReport>) -> Value {
    if let Some(native) = &response.native {
        return native.clone();
    }
    let choice = response.choices.first().cloned().unwrap_or_default();
    let mut content = Vec::new();
    let text = choice.refusal.clone().unwrap_or(choice.text);
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    content.extend(choice.tool_calls.iter().map(tool_use));
    let finish = if choice.refusal.is_some() {
        Some(FinishReason::ContentFilter)
    } else {
        choice.finish_reason
    };
    let counted = report
        .map(|r| r.usage)
        .or(response.usage)
        .unwrap_or_default();
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage(&counted),
    })
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Writes Anthropic's named events for a translated stream: text streams as
/// it comes; tool calls go out as whole blocks once the answer has them
/// (other providers may interleave parallel calls, Anthropic's blocks may not).
pub(crate) struct EventWriter {
    id: String,
    model: String,
    started: bool,
    /// The open text block's index.
    text_block: Option<u32>,
    next_block: u32,
    calls: Vec<ToolCall>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    refused: bool,
}

impl EventWriter {
    pub(crate) fn new(id: String, model: String) -> Self {
        Self {
            id,
            model,
            started: false,
            text_block: None,
            next_block: 0,
            calls: Vec::new(),
            finish: None,
            usage: None,
            refused: false,
        }
    }

    fn start(&mut self, out: &mut String) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let message = json!({"type": "message_start", "message": {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }});
        out.push_str(&event("message_start", &message));
        out.push_str(&event("ping", &json!({"type": "ping"})));
    }

    fn text(&mut self, text: &str, out: &mut String) {
        let index = if let Some(index) = self.text_block {
            index
        } else {
            let index = self.next_block;
            self.next_block += 1;
            self.text_block = Some(index);
            out.push_str(&event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "text", "text": ""}}),
            ));
            index
        };
        out.push_str(&event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
        ));
    }

    fn close_text(&mut self, out: &mut String) {
        if let Some(index) = self.text_block.take() {
            out.push_str(&event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    /// The events one piece of the answer makes (none for pieces this API
    /// has no place for until the end).
    pub(crate) fn chunk(&mut self, chunk: ChatChunk) -> String {
        let mut out = String::new();
        self.start(&mut out);
        match chunk {
            ChatChunk::Text(text) if !text.is_empty() => self.text(&text, &mut out),
            ChatChunk::Refusal(text) => {
                self.refused = true;
                self.text(&text, &mut out);
            }
            ChatChunk::ToolCall(delta) => add_tool_delta(&mut self.calls, delta),
            ChatChunk::Finish(reason) => self.finish = Some(reason),
            ChatChunk::Usage(counted) => self.usage = Some(counted),
            ChatChunk::Cost(report) => self.usage = Some(report.usage),
            ChatChunk::Model(model) => self.model = model,
            // Reasoning without Anthropic's signature, log probabilities and
            // a provider's own events have no place in a translated stream.
            _ => {}
        }
        out
    }

    /// The end: the tool calls, why it ended, the usage, `message_stop`.
    pub(crate) fn end(&mut self) -> String {
        let mut out = String::new();
        self.start(&mut out);
        self.close_text(&mut out);
        for mut call in std::mem::take(&mut self.calls) {
            let index = self.next_block;
            self.next_block += 1;
            // The block opens with empty input; the arguments follow as a delta.
            let arguments = std::mem::take(&mut call.arguments);
            let block = tool_use(&call);
            out.push_str(&event(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": block}),
            ));
            // As the whole answer does: arguments that are not a JSON object become `{}`.
            let arguments = match serde_json::from_str::<Value>(&arguments) {
                Ok(Value::Object(_)) => arguments,
                _ => "{}".to_owned(),
            };
            out.push_str(&event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments}}),
            ));
            out.push_str(&event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
        let finish = if self.refused {
            Some(FinishReason::ContentFilter)
        } else {
            self.finish
        };
        out.push_str(&event(
            "message_delta",
            &json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(finish), "stop_sequence": null},
                "usage": usage(&self.usage.unwrap_or_default())}),
        ));
        out.push_str(&event("message_stop", &json!({"type": "message_stop"})));
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

    /// An error after the stream began, as Anthropic sends one.
    fn failed(&mut self, error: &byok_providers::ProviderError) -> String {
        let kind = match error {
            byok_providers::ProviderError::RateLimited { .. } => "rate_limit_error",
            byok_providers::ProviderError::Timeout { .. } => "timeout_error",
            _ => "api_error",
        };
        event(
            "error",
            &json!({"type": "error", "error": {"type": kind, "message": error.to_string()}}),
        )
    }

    fn is_failure_event(name: &str) -> bool {
        name == "error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<MessagesCall, Refusal> {
        MessagesRequest::parse(body, None, false)
    }

    #[test]
    fn a_plain_request_translates_and_keeps_its_body() {
        let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hi"}]});
        let call = parse(body.clone()).unwrap();
        assert_eq!(call.model.as_deref(), Some("claude-sonnet-4-6"));
        assert_eq!(call.request.system.as_deref(), Some("Be brief."));
        assert_eq!(call.request.max_output_tokens, Some(100));
        let native = call.request.native.unwrap();
        assert_eq!(*native.body, body);
        // Cache markers are hints: nothing only Anthropic could carry.
        assert!(native.only.is_empty(), "{:?}", native.only);
    }

    #[test]
    fn tool_results_become_tool_turns_before_the_user_text() {
        let call = parse(json!({"model": "auto", "max_tokens": 100, "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C", "is_error": false},
                {"type": "text", "text": "and?"}]}]}))
        .unwrap();
        assert_eq!(call.model, None);
        let roles: Vec<Role> = call.request.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::User]);
        let assistant = &call.request.messages[1];
        assert_eq!(assistant.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(assistant.reasoning.as_deref(), Some("hm"));
        assert_eq!(
            call.request.messages[2].tool_call_id.as_deref(),
            Some("toolu_1")
        );
        // Signed and redacted thinking need nothing of Anthropic elsewhere.
        assert!(call.request.native.unwrap().only.is_empty());
    }

    #[test]
    fn fields_only_anthropic_has_are_named_for_the_others() {
        let call = parse(json!({"model": "auto", "max_tokens": 10, "top_k": 5, "container": "c",
            "tools": [{"type": "bash_20250124", "name": "bash"}],
            "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "AA=="}}]}]}))
        .unwrap();
        let only = call.request.native.as_ref().unwrap().only.clone();
        for field in [
            "container",
            "top_k",
            "messages[].content[].document",
            "tools[].type: bash_20250124",
        ] {
            assert!(only.iter().any(|f| f == field), "{field} in {only:?}");
        }
        let refusal = call
            .request
            .native_refusal(byok_core::ProviderKind::OpenAi)
            .unwrap();
        assert!(refusal.reason.contains("Anthropic"), "{refusal}");
        assert!(
            call.request
                .native_refusal(byok_core::ProviderKind::Anthropic)
                .is_none()
        );
    }

    #[test]
    fn blocks_of_other_shapes_are_for_anthropic_alone_not_malformed() {
        // A search result's source is a string; a tool result may nest one.
        let call = parse(json!({"model": "auto", "max_tokens": 10, "messages": [
            {"role": "user", "content": [{"type": "search_result", "source": "https://example.com", "title": "t",
                "content": [{"type": "text", "text": "x"}]}, {"type": "text", "text": "Use it."}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "search_result", "source": "https://example.com", "title": "t", "content": []}]}]}]}))
        .unwrap();
        let only = call.request.native.unwrap().only;
        assert!(
            only.contains(&"messages[].content[].search_result".to_owned()),
            "{only:?}"
        );
        assert!(
            only.contains(&"messages[].content[].tool_result.content[].search_result".to_owned()),
            "{only:?}"
        );
    }

    #[test]
    fn betas_are_passed_or_refused_by_name() {
        let body = json!({"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]});
        let call = MessagesRequest::parse(
            body.clone(),
            Some("claude-code-20250219, oauth-2025-04-20,interleaved-thinking-2025-05-14"),
            false,
        )
        .unwrap();
        assert_eq!(
            call.request.native.unwrap().headers,
            [(
                "anthropic-beta".to_owned(),
                "claude-code-20250219,interleaved-thinking-2025-05-14".to_owned()
            )]
        );
        // Key-shaped values are refused without being repeated.
        for key in [
            "sk-0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
        ] {
            let refusal = MessagesRequest::parse(body.clone(), Some(key), false).unwrap_err();
            assert_eq!(refusal.param.as_deref(), Some("anthropic-beta"));
            assert!(!refusal.message.contains(key));
        }
        let refusal =
            MessagesRequest::parse(body.clone(), Some("context-1m-2025-08-07"), false).unwrap_err();
        assert_eq!(
            refusal.param.as_deref(),
            Some("anthropic-beta: context-1m-2025-08-07")
        );
        // A beta byok does not know goes to Anthropic, and only there.
        let call = MessagesRequest::parse(body.clone(), Some("made-up-2030-01-01"), false).unwrap();
        let native = call.request.native.unwrap();
        assert_eq!(
            native.headers,
            [("anthropic-beta".to_owned(), "made-up-2030-01-01".to_owned())]
        );
        assert_eq!(native.only, ["anthropic-beta: made-up-2030-01-01"]);
    }

    #[test]
    fn server_tools_and_missing_max_tokens_are_refused() {
        let refusal = parse(json!({"model": "auto", "max_tokens": 10,
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "messages": [{"role": "user", "content": "x"}]}))
        .unwrap_err();
        assert_eq!(refusal.code, "unsupported_parameter");
        let refusal =
            parse(json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]}))
                .unwrap_err();
        assert_eq!(refusal.param.as_deref(), Some("max_tokens"));
        assert!(
            MessagesRequest::parse(
                json!({"model": "auto", "messages": [{"role": "user", "content": "x"}]}),
                None,
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn thinking_budgets_become_efforts() {
        for (budget, effort) in [
            (1024, ReasoningEffort::Low),
            (4000, ReasoningEffort::Medium),
            (16_000, ReasoningEffort::High),
            (64_000, ReasoningEffort::Xhigh),
        ] {
            let call = parse(json!({"model": "auto", "max_tokens": 100_000,
                "thinking": {"type": "enabled", "budget_tokens": budget},
                "messages": [{"role": "user", "content": "x"}]}))
            .unwrap();
            assert_eq!(call.request.reasoning, Some(effort), "{budget}");
        }
    }

    #[test]
    fn a_translated_stream_has_anthropics_event_order() {
        let mut writer = EventWriter::new("msg_1".to_owned(), "gpt-5".to_owned());
        let mut out = writer.chunk(ChatChunk::Text("Hel".to_owned()));
        out.push_str(&writer.chunk(ChatChunk::Text("lo".to_owned())));
        out.push_str(&writer.chunk(ChatChunk::ToolCall(byok_core::ToolCallDelta {
            index: 0,
            id: Some("call_1".to_owned()),
            name: Some("f".to_owned()),
            arguments: "{\"a\":".to_owned(),
            signature: None,
        })));
        out.push_str(&writer.chunk(ChatChunk::ToolCall(byok_core::ToolCallDelta {
            index: 0,
            id: None,
            name: None,
            arguments: "1}".to_owned(),
            signature: None,
        })));
        out.push_str(&writer.chunk(ChatChunk::Finish(FinishReason::ToolCalls)));
        out.push_str(&writer.chunk(ChatChunk::Usage(Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        })));
        out.push_str(&writer.end());
        let names: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert!(out.contains(r#""partial_json":"{\"a\":1}""#), "{out}");
        assert!(out.contains(r#""stop_reason":"tool_use""#), "{out}");
        assert!(out.contains(r#""output_tokens":5"#), "{out}");
    }
}
