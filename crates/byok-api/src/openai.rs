//! OpenAI's wire format for the gateway's `/v1` door: the Chat Completions
//! and Embeddings requests, answers, stream chunks and errors, typed, and
//! their translation to and from byok's provider-neutral types.
//!
//! Every request field has one fate: carried (each adapter sends it in its
//! provider's native form or refuses the request, naming it), a tuning hint
//! (forwarded to OpenAI and Azure, not needed elsewhere), or refused here
//! with `400 unsupported_parameter`. Unknown fields are refused by name.
//! [`CHAT_FIELDS`] lists the fates; `docs/api.md` has the matrix per provider.

use std::collections::BTreeMap;

use base64::Engine as _;
use byok_core::{
    ChatChoice, ChatMessage, ChatRequest, ContentPart, FinishReason, ImageSource, JsonSchema,
    ReasoningEffort, ResponseFormat, Role, Tool, ToolCall, ToolCallDelta, ToolChoice, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What byok does with a request field, before any adapter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Translated into byok's request; each adapter carries it natively,
    /// translates it, or refuses the request naming it.
    Carried,
    /// Forwarded verbatim to OpenAI and Azure; refused for the others.
    OpenAiOnly,
    /// Only tunes how the answer is produced: forwarded to OpenAI and Azure,
    /// not sent to the others (see `docs/api.md` for why each is safe).
    Hint,
    /// Refused for every provider with `400 unsupported_parameter`.
    Refused,
}

/// Every top-level field of OpenAI's Chat Completions request, with its fate.
pub const CHAT_FIELDS: &[(&str, Fate)] = &[
    ("model", Fate::Carried),
    ("messages", Fate::Carried),
    ("stream", Fate::Carried),
    ("stream_options", Fate::Carried),
    ("temperature", Fate::Carried),
    ("top_p", Fate::Carried),
    ("n", Fate::Carried),
    ("stop", Fate::Carried),
    ("max_tokens", Fate::Carried),
    ("max_completion_tokens", Fate::Carried),
    ("tools", Fate::Carried),
    ("tool_choice", Fate::Carried),
    ("parallel_tool_calls", Fate::Carried),
    ("response_format", Fate::Carried),
    ("reasoning_effort", Fate::Carried),
    ("seed", Fate::Carried),
    ("presence_penalty", Fate::Carried),
    ("frequency_penalty", Fate::Carried),
    ("logprobs", Fate::Carried),
    ("top_logprobs", Fate::Carried),
    ("user", Fate::Carried),
    ("safety_identifier", Fate::Carried),
    ("modalities", Fate::Carried),
    ("service_tier", Fate::Carried),
    ("logit_bias", Fate::OpenAiOnly),
    ("verbosity", Fate::OpenAiOnly),
    ("metadata", Fate::OpenAiOnly),
    ("prediction", Fate::OpenAiOnly),
    ("store", Fate::OpenAiOnly),
    ("prompt_cache_key", Fate::Hint),
    ("prompt_cache_retention", Fate::Hint),
    ("audio", Fate::Refused),
    ("web_search_options", Fate::Refused),
    ("functions", Fate::Refused),
    ("function_call", Fate::Refused),
];

/// A refused request: the stable code, the field (OpenAI's `param`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `unsupported_parameter`, `invalid_request`, ...
    pub code: &'static str,
    /// The field, as the client named it.
    pub param: Option<String>,
    /// A sentence for a person.
    pub message: String,
}

impl Refusal {
    pub(crate) fn unsupported(param: &str, why: &str) -> Self {
        Self {
            code: "unsupported_parameter",
            param: Some(param.to_owned()),
            message: format!("`{param}` is not supported: {why}"),
        }
    }

    pub(crate) fn invalid(code: &'static str, param: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            param: Some(param.to_owned()),
            message: message.into(),
        }
    }
}

pub(crate) type Extra = BTreeMap<String, Value>;

/// A client-chosen name, bounded before it is echoed in a refusal.
pub(crate) fn bounded(name: &str) -> String {
    // API field and type names are short snake_case words: anything else (a
    // key pasted as a field name, say) is refused without being repeated in
    // the answer or the logs.
    // API names never hold a long run of hex digits; keys do.
    let longest_hex = name
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if !name.is_empty()
        && name.len() <= 48
        && longest_hex < 12
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        name.to_owned()
    } else {
        "(a name byok does not repeat)".to_owned()
    }
}

/// Refuses the first unknown field of `extra`, named under `prefix`. A
/// field whose value is `null` says nothing, so nothing is dropped by
/// ignoring it (SDKs echo answers back with `null`s in them).
pub(crate) fn refuse_unknown(prefix: &str, extra: &Extra) -> Result<(), Refusal> {
    match extra.iter().find(|(_, v)| !v.is_null()).map(|(k, _)| k) {
        None => Ok(()),
        Some(field) => Err(Refusal::unsupported(
            // A client's own field name, bounded: a 4 MiB name is not echoed.
            &format!("{prefix}{}", bounded(field)),
            "byok does not know this field; it was not sent to any provider",
        )),
    }
}

/// OpenAI's Chat Completions request.
#[derive(Deserialize)]
pub(crate) struct ChatCompletionRequest {
    pub(crate) model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    pub(crate) stream: bool,
    stream_options: Option<StreamOptions>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    n: Option<u32>,
    stop: Option<Stop>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    tools: Option<Vec<InTool>>,
    tool_choice: Option<InToolChoice>,
    parallel_tool_calls: Option<bool>,
    response_format: Option<InResponseFormat>,
    reasoning_effort: Option<String>,
    seed: Option<i64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logprobs: Option<bool>,
    top_logprobs: Option<u8>,
    user: Option<String>,
    safety_identifier: Option<String>,
    modalities: Option<Vec<String>>,
    service_tier: Option<String>,
    logit_bias: Option<Value>,
    verbosity: Option<Value>,
    metadata: Option<Value>,
    prediction: Option<Value>,
    store: Option<bool>,
    prompt_cache_key: Option<Value>,
    prompt_cache_retention: Option<Value>,
    audio: Option<Value>,
    web_search_options: Option<Value>,
    functions: Option<Value>,
    function_call: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

impl std::fmt::Debug for ChatCompletionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatCompletionRequest")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    include_usage: Option<bool>,
    /// Padding OpenAI adds to chunks; byok adds none, so either value is honoured.
    #[expect(dead_code, reason = "accepted: byok never pads its chunks")]
    include_obfuscation: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    content: Option<InContent>,
    name: Option<String>,
    tool_calls: Option<Vec<InToolCall>>,
    tool_call_id: Option<String>,
    reasoning_content: Option<String>,
    refusal: Option<String>,
    function_call: Option<Value>,
    audio: Option<Value>,
    /// An earlier answer's citations, echoed back by SDKs: metadata about
    /// that answer, not input, so no provider needs it.
    #[expect(dead_code, reason = "accepted and not sent: output metadata")]
    annotations: Option<Value>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InContent {
    Text(String),
    Parts(Vec<InPart>),
}

#[derive(Deserialize)]
struct InPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    image_url: Option<InImageUrl>,
    refusal: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InImageUrl {
    url: String,
    detail: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    function: InFunctionCall,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InFunctionCall {
    name: String,
    arguments: String,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InTool {
    #[serde(rename = "type")]
    kind: String,
    function: Option<InFunctionDef>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InFunctionDef {
    name: String,
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
        function: Option<InNamedFunction>,
        #[serde(flatten)]
        extra: Extra,
    },
}

#[derive(Deserialize)]
struct InNamedFunction {
    name: String,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<InJsonSchema>,
    #[serde(flatten)]
    extra: Extra,
}

#[derive(Deserialize)]
struct InJsonSchema {
    name: String,
    description: Option<String>,
    schema: Option<Value>,
    strict: Option<bool>,
    #[serde(flatten)]
    extra: Extra,
}

/// Fields and blocks of a door's own API that only its provider carries
/// (see [`byok_core::NativeRequest::only`]), as the client named them.
#[derive(Debug, Default)]
pub(crate) struct Only(pub(crate) Vec<String>);

impl Only {
    pub(crate) fn add(&mut self, field: impl Into<String>) {
        let field = field.into();
        if !self.0.contains(&field) {
            self.0.push(field);
        }
    }

    /// Every non-null field of `extra`, named under `prefix`.
    pub(crate) fn extra(&mut self, prefix: &str, extra: &Extra) {
        for (name, value) in extra {
            if !value.is_null() {
                self.add(format!("{prefix}{}", bounded(name)));
            }
        }
    }
}

/// Most tool calls one streamed answer may make; a stream claiming more is
/// a broken provider, and what goes past it is logged, not kept.
const MAX_STREAMED_CALLS: usize = 1024;

/// Adds a streamed piece of a tool call to the calls so far (a door that
/// writes whole calls once the answer has them).
pub(crate) fn add_tool_delta(calls: &mut Vec<ToolCall>, delta: ToolCallDelta) {
    let at = usize::try_from(delta.index).unwrap_or(usize::MAX);
    if at >= MAX_STREAMED_CALLS {
        tracing::warn!(
            index = at,
            "a provider streamed a tool call past the limit; not kept"
        );
        return;
    }
    if at >= calls.len() {
        calls.resize_with(at + 1, || ToolCall {
            id: String::new(),
            name: String::new(),
            arguments: String::new(),
            signature: None,
        });
    }
    let call = &mut calls[at];
    if let Some(id) = delta.id {
        call.id = id;
    }
    if let Some(name) = delta.name {
        call.name = name;
    }
    if delta.signature.is_some() {
        call.signature = delta.signature;
    }
    call.arguments.push_str(&delta.arguments);
}

/// An `invalid_request` refusal naming `param`.
pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Refusal {
    Refusal::invalid("invalid_request", param, message)
}

/// Separates a tool call's id from the provider state byok round-trips in it.
const SIGNATURE_SEPARATOR: &str = "~byok~";

/// The separator where a tool call id must be `[A-Za-z0-9_-]+` (Anthropic's
/// and the Responses API's clients send it back to Anthropic).
const ID_SAFE_SEPARATOR: &str = "_byoksig_";

/// [`tool_call_id`] for ids limited to `[A-Za-z0-9_-]`.
pub(crate) fn id_safe_tool_call_id(call_id: &str, signature: Option<&str>) -> String {
    match signature {
        None => call_id.to_owned(),
        Some(signature) => format!(
            "{call_id}{ID_SAFE_SEPARATOR}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        ),
    }
}

/// The tool call id a client sees: the provider's id, and any state the
/// provider needs back next turn (Gemini's thought signature), base64url.
pub(crate) fn tool_call_id(call_id: &str, signature: Option<&str>) -> String {
    match signature {
        None => call_id.to_owned(),
        Some(signature) => format!(
            "{call_id}{SIGNATURE_SEPARATOR}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature)
        ),
    }
}

/// The provider's id and state from a client's tool call id.
pub(crate) fn split_tool_call_id(id: &str) -> (String, Option<String>) {
    if let Some((call_id, encoded)) = id
        .split_once(SIGNATURE_SEPARATOR)
        .or_else(|| id.split_once(ID_SAFE_SEPARATOR))
        && let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded)
        && let Ok(signature) = String::from_utf8(bytes)
    {
        return (call_id.to_owned(), Some(signature));
    }
    (id.to_owned(), None)
}

/// Images byok passes on: the types every vision provider takes.
pub(crate) const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

fn image(url: InImageUrl) -> Result<ContentPart, Refusal> {
    refuse_unknown("messages[].content[].image_url.", &url.extra)?;
    image_url(url.url, url.detail, "messages[].content[].image_url.url")
}

/// An image given by URL: `https://`, or a base64 `data:` URL of a type
/// every vision provider takes.
pub(crate) fn image_url(
    url: String,
    detail: Option<String>,
    param: &str,
) -> Result<ContentPart, Refusal> {
    let source = if let Some(rest) = url.strip_prefix("data:") {
        let (media_type, data) = rest.split_once(";base64,").ok_or_else(|| {
            Refusal::invalid(
                "invalid_image_url",
                param,
                "a data: image URL must be base64: data:image/png;base64,...",
            )
        })?;
        if !IMAGE_TYPES.contains(&media_type) {
            return Err(Refusal::invalid(
                "invalid_image_url",
                param,
                "images must be image/png, image/jpeg, image/gif or image/webp",
            ));
        }
        if base64::engine::general_purpose::STANDARD
            .decode(data.as_bytes())
            .is_err()
        {
            return Err(Refusal::invalid(
                "invalid_image_url",
                param,
                "the data: URL's base64 does not decode",
            ));
        }
        ImageSource::Base64 {
            media_type: media_type.to_owned(),
            data: data.to_owned(),
        }
    } else if url.starts_with("https://") && url::Url::parse(&url).is_ok() {
        ImageSource::Url(url)
    } else {
        return Err(Refusal::invalid(
            "invalid_image_url",
            param,
            "an image URL must be https:// or a data: URL",
        ));
    };
    Ok(ContentPart::Image { source, detail })
}

fn content(content: Option<InContent>, images: bool) -> Result<Vec<ContentPart>, Refusal> {
    match content {
        None => Ok(vec![]),
        Some(InContent::Text(text)) => Ok(vec![ContentPart::Text(text)]),
        Some(InContent::Parts(parts)) => parts
            .into_iter()
            .map(|part| {
                refuse_unknown("messages[].content[].", &part.extra)?;
                match (part.kind.as_str(), part.text, part.image_url, part.refusal) {
                    ("text", Some(text), None, None) => Ok(ContentPart::Text(text)),
                    ("refusal", None, None, Some(refusal)) => Ok(ContentPart::Text(refusal)),
                    ("image_url", None, Some(url), None) if images => image(url),
                    ("image_url", ..) => Err(Refusal::unsupported(
                        "messages[].content[].image_url",
                        "images go in user messages",
                    )),
                    ("text" | "refusal", ..) => Err(Refusal::invalid(
                        "invalid_request",
                        "messages[].content[]",
                        "a content part has the fields of its type only",
                    )),
                    (other, ..) => Err(Refusal::unsupported(
                        &format!("messages[].content[].{}", bounded(other)),
                        "byok carries text and image parts",
                    )),
                }
            })
            .collect(),
    }
}

/// An assistant turn's tool calls, with provider state taken out of their ids.
fn tool_calls(calls: Vec<InToolCall>) -> Result<Vec<ToolCall>, Refusal> {
    calls
        .into_iter()
        .map(|c| {
            refuse_unknown("messages[].tool_calls[].", &c.extra)?;
            refuse_unknown("messages[].tool_calls[].function.", &c.function.extra)?;
            if c.kind.as_deref().is_some_and(|k| k != "function") {
                return Err(Refusal::unsupported(
                    "messages[].tool_calls[].type",
                    "byok carries function tool calls",
                ));
            }
            let (id, signature) = split_tool_call_id(&c.id);
            Ok(ToolCall {
                id,
                name: c.function.name,
                arguments: c.function.arguments,
                signature,
            })
        })
        .collect()
}

fn message(
    message: InMessage,
    system: Option<&mut Vec<String>>,
) -> Result<Option<ChatMessage>, Refusal> {
    refuse_unknown("messages[].", &message.extra)?;
    if message.function_call.as_ref().is_some_and(|f| !f.is_null()) {
        return Err(Refusal::unsupported(
            "messages[].function_call",
            "the deprecated function call format; use tool_calls",
        ));
    }
    if message.audio.as_ref().is_some_and(|a| !a.is_null()) {
        return Err(Refusal::unsupported(
            "messages[].audio",
            "byok carries no audio",
        ));
    }
    let role = match message.role.as_str() {
        // Leading instructions become the system prompt; a name on them, or
        // instructions later in the conversation, stay where they are.
        "system" | "developer" => match system {
            Some(system) if message.name.is_none() => {
                let parts = content(message.content, false)?;
                system.push(
                    parts
                        .iter()
                        .filter_map(|p| match p {
                            ContentPart::Text(t) => Some(t.as_str()),
                            ContentPart::Image { .. } => None,
                        })
                        .collect(),
                );
                return Ok(None);
            }
            _ => Role::System,
        },
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        "function" => {
            return Err(Refusal::unsupported(
                "messages[].role",
                "the deprecated `function` role; use `tool`",
            ));
        }
        _ => {
            return Err(Refusal::invalid(
                "unsupported_role",
                "messages[].role",
                "roles are system, developer, user, assistant and tool",
            ));
        }
    };
    let mut parts = content(message.content, role == Role::User)?;
    // An earlier answer's refusal is what the assistant said.
    if let (Role::Assistant, Some(refusal)) = (role, message.refusal) {
        parts.push(ContentPart::Text(refusal));
    }
    let tool_calls = tool_calls(message.tool_calls.unwrap_or_default())?;
    if !tool_calls.is_empty() && role != Role::Assistant {
        return Err(Refusal::invalid(
            "invalid_request",
            "messages[].tool_calls",
            "only assistant messages carry tool_calls",
        ));
    }
    let tool_call_id = match (role, message.tool_call_id) {
        (Role::Tool, Some(id)) => Some(split_tool_call_id(&id).0),
        (Role::Tool, None) => {
            return Err(Refusal::invalid(
                "invalid_request",
                "messages[].tool_call_id",
                "a tool message names the tool_call_id it answers",
            ));
        }
        (_, _) => None,
    };
    Ok(Some(ChatMessage {
        role,
        content: parts,
        tool_calls,
        tool_call_id,
        reasoning: message
            .reasoning_content
            .filter(|_| role == Role::Assistant),
        name: message.name,
    }))
}

fn tools(tools: Vec<InTool>) -> Result<Vec<Tool>, Refusal> {
    tools
        .into_iter()
        .map(|tool| {
            refuse_unknown("tools[].", &tool.extra)?;
            let function = match (tool.kind.as_str(), tool.function) {
                ("function", Some(function)) => function,
                ("function", None) => {
                    return Err(Refusal::invalid(
                        "invalid_request",
                        "tools[].function",
                        "a function tool has a function",
                    ));
                }
                (other, _) => {
                    return Err(Refusal::unsupported(
                        &format!("tools[].type: {}", bounded(other)),
                        "byok carries function tools",
                    ));
                }
            };
            refuse_unknown("tools[].function.", &function.extra)?;
            Ok(Tool {
                name: function.name,
                description: function.description,
                parameters: function.parameters,
                strict: function.strict,
            })
        })
        .collect()
}

fn tool_choice(choice: InToolChoice) -> Result<ToolChoice, Refusal> {
    let bad = || {
        Refusal::invalid(
            "invalid_request",
            "tool_choice",
            "tool_choice is auto, none, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
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
            function: Some(function),
            extra,
        } if kind == "function" => {
            refuse_unknown("tool_choice.", &extra)?;
            refuse_unknown("tool_choice.function.", &function.extra)?;
            Ok(ToolChoice::Function(function.name))
        }
        InToolChoice::Named { .. } => Err(bad()),
    }
}

fn response_format(format: InResponseFormat) -> Result<Option<ResponseFormat>, Refusal> {
    refuse_unknown("response_format.", &format.extra)?;
    if let Some(schema) = &format.json_schema {
        refuse_unknown("response_format.json_schema.", &schema.extra)?;
    }
    match (format.kind.as_str(), format.json_schema) {
        ("text", _) => Ok(None),
        ("json_object", _) => Ok(Some(ResponseFormat::JsonObject)),
        ("json_schema", Some(schema)) => Ok(Some(ResponseFormat::JsonSchema(JsonSchema {
            name: schema.name,
            description: schema.description,
            schema: schema
                .schema
                .unwrap_or_else(|| serde_json::json!({"type": "object"})),
            strict: schema.strict,
        }))),
        ("json_schema", None) => Err(Refusal::invalid(
            "invalid_request",
            "response_format.json_schema",
            "a json_schema response format has a json_schema",
        )),
        (other, _) => Err(Refusal::unsupported(
            &format!("response_format.type: {}", bounded(other)),
            "byok carries text, json_object and json_schema",
        )),
    }
}

/// What the door needs besides byok's request.
#[derive(Debug)]
pub(crate) struct ChatCall {
    pub(crate) request: ChatRequest,
    pub(crate) include_usage: bool,
}

impl ChatCompletionRequest {
    /// Fields refused for every provider, and unknown fields.
    fn refuse_everywhere(&self) -> Result<(), Refusal> {
        refuse_unknown("", &self.extra)?;
        for (field, set) in [
            ("audio", self.audio.is_some()),
            ("web_search_options", self.web_search_options.is_some()),
            ("functions", self.functions.is_some()),
            ("function_call", self.function_call.is_some()),
        ] {
            if set {
                return Err(Refusal::unsupported(
                    field,
                    match field {
                        "audio" => "byok carries no audio",
                        "web_search_options" => {
                            "byok does not run provider web search (it is billed per call, outside token prices)"
                        }
                        _ => "the deprecated function-calling format; use tools and tool_choice",
                    },
                ));
            }
        }
        if let Some(modalities) = &self.modalities
            && modalities.iter().any(|m| m != "text")
        {
            return Err(Refusal::unsupported(
                "modalities",
                "byok answers with text only",
            ));
        }
        if let Some(tier) = self.service_tier.as_deref()
            && !matches!(tier, "auto" | "default")
        {
            return Err(Refusal::unsupported(
                "service_tier",
                "byok prices the standard tier; flex, scale and priority tiers bill differently",
            ));
        }
        Ok(())
    }

    /// The OpenAI-only fields (refused elsewhere) and the hints (not needed elsewhere).
    fn openai_fields(&mut self) -> (Extra, Extra) {
        let mut openai_only = BTreeMap::new();
        for (field, value) in [
            ("logit_bias", self.logit_bias.take()),
            ("verbosity", self.verbosity.take()),
            ("metadata", self.metadata.take()),
            ("prediction", self.prediction.take()),
            ("store", self.store.filter(|s| *s).map(Value::Bool)),
        ] {
            if let Some(value) = value.filter(|v| !v.is_null()) {
                openai_only.insert(field.to_owned(), value);
            }
        }
        let mut openai_hints = BTreeMap::new();
        for (field, value) in [
            ("prompt_cache_key", self.prompt_cache_key.take()),
            ("prompt_cache_retention", self.prompt_cache_retention.take()),
            (
                "store",
                (self.store == Some(false)).then_some(Value::Bool(false)),
            ),
        ] {
            if let Some(value) = value.filter(|v| !v.is_null()) {
                openai_hints.insert(field.to_owned(), value);
            }
        }
        (openai_only, openai_hints)
    }

    /// Translates the request, refusing what byok cannot honour anywhere.
    pub(crate) fn into_chat(mut self) -> Result<ChatCall, Refusal> {
        self.refuse_everywhere()?;
        let (openai_only, mut openai_hints) = self.openai_fields();
        // With `user` set too, `safety_identifier` is OpenAI's abuse-monitoring
        // id: a hint, forwarded to OpenAI and Azure as it is.
        if self.user.is_some()
            && let Some(id) = self.safety_identifier.take()
        {
            openai_hints.insert("safety_identifier".to_owned(), Value::String(id));
        }
        let include_usage = match self.stream_options {
            Some(options) => {
                refuse_unknown("stream_options.", &options.extra)?;
                options.include_usage.unwrap_or(false)
            }
            None => false,
        };
        if self.n == Some(0) {
            return Err(Refusal::invalid("invalid_request", "n", "n is at least 1"));
        }
        let reasoning = match self.reasoning_effort.as_deref() {
            None => None,
            Some(effort) => Some(ReasoningEffort::parse(effort).ok_or_else(|| {
                Refusal::invalid(
                    "invalid_request",
                    "reasoning_effort",
                    "reasoning_effort is none, minimal, low, medium, high or xhigh",
                )
            })?),
        };
        let mut system = Vec::new();
        let mut messages = Vec::with_capacity(self.messages.len());
        for m in self.messages {
            let leading = messages.is_empty();
            if let Some(m) = message(m, leading.then_some(&mut system))? {
                messages.push(m);
            }
        }
        if !messages
            .iter()
            .any(|m| matches!(m.role, Role::User | Role::Tool))
        {
            return Err(Refusal::invalid(
                "no_messages",
                "messages",
                "messages must contain at least one user or tool message",
            ));
        }
        let request = ChatRequest {
            model: String::new(),
            system: (!system.is_empty()).then(|| system.join("\n\n")),
            messages,
            temperature: self.temperature,
            top_p: self.top_p,
            max_output_tokens: self.max_completion_tokens.or(self.max_tokens),
            stop: match self.stop {
                None => vec![],
                Some(Stop::One(s)) => vec![s],
                Some(Stop::Many(v)) => v,
            },
            tools: tools(self.tools.unwrap_or_default())?,
            tool_choice: self.tool_choice.map(tool_choice).transpose()?,
            parallel_tool_calls: self.parallel_tool_calls,
            response_format: self
                .response_format
                .map(response_format)
                .transpose()?
                .flatten(),
            reasoning,
            prefer_reasoning: false,
            reasoning_hint: None,
            output_ceiling: false,
            seed: self.seed,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            logprobs: self.logprobs.unwrap_or(false),
            top_logprobs: self.top_logprobs,
            n: self.n.filter(|n| *n > 1),
            user: self.user.or_else(|| self.safety_identifier.take()),
            openai_only,
            openai_hints,
            native: None,
        };
        Ok(ChatCall {
            request,
            include_usage,
        })
    }
}

/// OpenAI's name for a finish reason.
pub(crate) fn finish(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolCalls => "tool_calls",
    }
}

/// OpenAI's usage block.
#[derive(Debug, Serialize)]
pub(crate) struct OutUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
    /// byok's addition (as `OpenRouter` adds it): what the answer cost in USD, and
    /// how that is known (`exact`, `estimated`, `unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<serde_json::Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_source: Option<&'static str>,
}

impl OutUsage {
    /// The usage an answer was priced by, with its cost.
    pub(crate) fn priced(report: &byok_core::CostReport) -> Self {
        let mut usage = Self::from(&report.usage);
        usage.cost = report.picodollars.and_then(|p| {
            // Exact decimal text, read as a JSON number (no float rounding on the way).
            serde_json::from_str(&byok_router::Money::from_picodollars(p).to_usd_string()).ok()
        });
        usage.cost_source = Some(report.source.as_str());
        usage
    }
}

#[derive(Debug, Serialize)]
struct PromptDetails {
    cached_tokens: u64,
}

#[derive(Debug, Serialize)]
struct CompletionDetails {
    reasoning_tokens: u64,
}

impl From<&Usage> for OutUsage {
    fn from(usage: &Usage) -> Self {
        Self {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
            total_tokens: usage.input_tokens + usage.output_tokens,
            prompt_tokens_details: PromptDetails {
                cached_tokens: usage.cached_input_tokens,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: usage.reasoning_tokens,
            },
            cost: None,
            cost_source: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct OutFunction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct OutToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: OutFunction<'a>,
}

#[derive(Debug, Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    refusal: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct OutChoice<'a> {
    index: usize,
    message: OutMessage<'a>,
    logprobs: Option<&'a Value>,
    finish_reason: &'static str,
}

/// OpenAI's `chat.completion`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: Vec<OutChoice<'a>>,
    usage: OutUsage,
}

impl<'a> ChatCompletion<'a> {
    pub(crate) fn new(
        id: &'a str,
        created: i64,
        model: &'a str,
        choices: &'a [ChatChoice],
        usage: OutUsage,
    ) -> Self {
        Self {
            id,
            object: "chat.completion",
            created,
            model,
            choices: choices
                .iter()
                .enumerate()
                .map(|(index, c)| OutChoice {
                    index,
                    message: OutMessage {
                        role: "assistant",
                        content: (!c.text.is_empty() || c.tool_calls.is_empty())
                            .then_some(c.text.as_str())
                            .filter(|_| c.refusal.is_none() || !c.text.is_empty()),
                        reasoning_content: c.reasoning.as_deref(),
                        tool_calls: c
                            .tool_calls
                            .iter()
                            .map(|t| OutToolCall {
                                index: None,
                                id: Some(tool_call_id(&t.id, t.signature.as_deref())),
                                kind: Some("function"),
                                function: OutFunction {
                                    name: Some(&t.name),
                                    arguments: Some(&t.arguments),
                                },
                            })
                            .collect(),
                        refusal: c.refusal.as_deref(),
                    },
                    logprobs: c.logprobs.as_ref(),
                    finish_reason: finish(c.finish_reason.unwrap_or(FinishReason::Stop)),
                })
                .collect(),
            usage,
        }
    }
}

/// The changing part of a stream chunk.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<&'a str>,
}

impl<'a> Delta<'a> {
    pub(crate) fn role(mut self) -> Self {
        self.role = Some("assistant");
        self
    }

    pub(crate) fn text(text: &'a str) -> Self {
        Self {
            content: Some(text),
            ..Self::default()
        }
    }

    pub(crate) fn reasoning(text: &'a str) -> Self {
        Self {
            reasoning_content: Some(text),
            ..Self::default()
        }
    }

    pub(crate) fn refusal(text: &'a str) -> Self {
        Self {
            refusal: Some(text),
            ..Self::default()
        }
    }

    pub(crate) fn tool_call(call: &'a ToolCallDelta) -> Self {
        let first = call.id.is_some() || call.name.is_some();
        Self {
            tool_calls: vec![OutToolCall {
                index: Some(call.index),
                id: call
                    .id
                    .as_deref()
                    .map(|id| tool_call_id(id, call.signature.as_deref())),
                kind: first.then_some("function"),
                function: OutFunction {
                    name: call.name.as_deref(),
                    arguments: Some(&call.arguments),
                },
            }],
            ..Self::default()
        }
    }
}

#[derive(Debug, Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<&'a Value>,
    finish_reason: Option<&'static str>,
}

/// OpenAI's `chat.completion.chunk`.
#[derive(Debug, Serialize)]
pub(crate) struct ChatChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OutUsage>,
}

impl<'a> ChatChunkOut<'a> {
    pub(crate) fn delta(
        id: &'a str,
        created: i64,
        model: &'a str,
        delta: Delta<'a>,
        logprobs: Option<&'a Value>,
        finish_reason: Option<&'static str>,
    ) -> Self {
        Self {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason,
            }],
            usage: None,
        }
    }

    pub(crate) fn usage(id: &'a str, created: i64, model: &'a str, usage: OutUsage) -> Self {
        Self {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            choices: vec![],
            usage: Some(usage),
        }
    }
}

/// OpenAI's embeddings request.
#[derive(Deserialize)]
pub(crate) struct EmbeddingsRequest {
    pub(crate) model: String,
    input: EmbeddingInput,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
    user: Option<String>,
    #[serde(flatten)]
    extra: Extra,
}

impl std::fmt::Debug for EmbeddingsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsRequest")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
    Tokens(serde::de::IgnoredAny),
}

/// An embeddings call: byok's request and how to encode the vectors.
#[derive(Debug)]
pub(crate) struct EmbedCall {
    pub(crate) request: byok_core::EmbeddingRequest,
    pub(crate) base64: bool,
}

impl EmbeddingsRequest {
    pub(crate) fn into_embed(self) -> Result<EmbedCall, Refusal> {
        refuse_unknown("", &self.extra)?;
        let inputs = match self.input {
            EmbeddingInput::One(text) => vec![text],
            EmbeddingInput::Many(texts) => texts,
            EmbeddingInput::Tokens(_) => {
                return Err(Refusal::unsupported(
                    "input",
                    "byok embeds text; token arrays are tokenizer-specific",
                ));
            }
        };
        if inputs.is_empty() {
            return Err(Refusal::invalid(
                "invalid_request",
                "input",
                "input is empty",
            ));
        }
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(_) => {
                return Err(Refusal::invalid(
                    "invalid_request",
                    "encoding_format",
                    "encoding_format is float or base64",
                ));
            }
        };
        Ok(EmbedCall {
            request: byok_core::EmbeddingRequest {
                model: String::new(),
                inputs,
                dimensions: self.dimensions,
                user: self.user,
            },
            base64,
        })
    }
}

/// One vector as OpenAI sends it: floats, or little-endian `f32` bytes in base64.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum OutVector<'a> {
    Floats(&'a [f32]),
    Base64(String),
}

impl<'a> OutVector<'a> {
    pub(crate) fn new(vector: &'a [f32], base64: bool) -> Self {
        if base64 {
            let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
            Self::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            Self::Floats(vector)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_round_trip_through_tool_call_ids() {
        let id = tool_call_id("call_1", Some("gemini:c2ln/+=="));
        assert!(id.starts_with("call_1~byok~"));
        assert_eq!(
            split_tool_call_id(&id),
            ("call_1".to_owned(), Some("gemini:c2ln/+==".to_owned()))
        );
        assert_eq!(split_tool_call_id("call_2"), ("call_2".to_owned(), None));
        assert_eq!(tool_call_id("call_2", None), "call_2");
    }

    #[test]
    fn every_field_has_one_fate() {
        let mut seen = std::collections::BTreeSet::new();
        for (field, _) in CHAT_FIELDS {
            assert!(seen.insert(*field), "{field} listed twice");
        }
        // Each listed field parses into a named struct field, not `extra`.
        for (field, _) in CHAT_FIELDS {
            if matches!(*field, "model" | "messages" | "stream") {
                continue; // required or defaulted; named fields by construction
            }
            let mut body = serde_json::json!({"model": "auto", "messages": []});
            body[*field] = Value::Null;
            let parsed: ChatCompletionRequest = serde_json::from_value(body).unwrap();
            assert!(parsed.extra.is_empty(), "{field} fell through to extra");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// JSON values shaped like requests: the known fields, with any values.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            "[a-z_:/;,.=+ -]{0,24}".prop_map(Value::String),
            Just(Value::String(
                "data:image/png;base64,iVBORw0KGgo=".to_owned()
            )),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("role".to_owned()),
                        Just("content".to_owned()),
                        Just("type".to_owned()),
                        Just("text".to_owned()),
                        Just("image_url".to_owned()),
                        Just("url".to_owned()),
                        Just("tool_calls".to_owned()),
                        Just("tool_call_id".to_owned()),
                        Just("function".to_owned()),
                        Just("name".to_owned()),
                        Just("arguments".to_owned()),
                        Just("json_schema".to_owned()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any request body: parsed and translated, or refused — never a panic.
        #[test]
        fn any_request_is_translated_or_refused(
            messages in proptest::collection::vec(value(), 0..4),
            extra in proptest::collection::btree_map(
                prop_oneof![
                    Just("tools".to_owned()),
                    Just("tool_choice".to_owned()),
                    Just("response_format".to_owned()),
                    Just("stop".to_owned()),
                    Just("n".to_owned()),
                    Just("reasoning_effort".to_owned()),
                    Just("stream_options".to_owned()),
                    "[a-z_]{1,10}",
                ],
                value(),
                0..4,
            ),
        ) {
            let mut body = serde_json::json!({"model": "auto", "messages": messages});
            for (k, v) in extra {
                body[k] = v;
            }
            if let Ok(request) = serde_json::from_value::<ChatCompletionRequest>(body) {
                let _ = request.into_chat();
            }
        }
    }
}
