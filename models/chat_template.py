"""The chat template every stage renders conversations with (ChatML turns, as SmolLM2 was tuned on).

    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)

Conversation features the recipe needs, in the message formats transformers and OpenAI use:
- images: a content part {"type": "image"} renders the processor's image placeholder, which the
  processor then expands to one token per visual token (user turns and tool results alike: the
  mid-training zoom tool answers with an image crop);
- reasoning: an assistant message's `reasoning_content` (or `thinking`) renders as
  `<think>\\n...\\n</think>\\n\\n` before the answer; `enable_thinking=False` with a generation
  prompt pre-fills an empty think block, so the model answers directly;
- tool use: `tools` (JSON schemas) are listed in the system turn between <tools></tools>; an
  assistant message's `tool_calls` render as `<tool_call>\\n{"name": ..., "arguments": ...}\\n
  </tool_call>`; `tool` messages render as `<tool_response>` blocks in a `tool` turn;
- training masks: assistant turns sit inside {% generation %} so apply_chat_template(...,
  return_assistant_tokens_mask=True) marks exactly the tokens a supervised loss should see.
"""

from __future__ import annotations

from models.config import SpecialTokens

# Every output character is written by an expression ({{ '...' }}) and every tag strips the
# whitespace around it, so the rendering does not depend on the Jinja environment's trim_blocks
# and lstrip_blocks settings. @NAME@ placeholders are filled from SpecialTokens.
_TEMPLATE = r"""
{%- macro render_content(content) -%}
  {%- if content is string -%}{{- content -}}
  {%- elif content is iterable -%}
    {%- for part in content -%}
      {%- if part.type == 'image' or part.type == 'image_url' -%}{{- '@IMAGE@' -}}
      {%- elif part.type == 'text' -%}{{- part.text -}}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro -%}
{%- set has_system = messages and messages[0].role == 'system' -%}
{%- if has_system or tools or @HAS_DEFAULT_SYSTEM@ -%}
  {{- '@IM_START@system\n' -}}
  {%- if has_system -%}{{- render_content(messages[0].content) -}}{%- else -%}{{- @DEFAULT_SYSTEM@ -}}{%- endif -%}
  {%- if tools -%}
    {{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query. ' -}}
    {{- 'The function signatures are inside <tools></tools>:\n<tools>' -}}
    {%- for tool in tools -%}{{- '\n' + (tool | tojson) -}}{%- endfor -%}
    {{- '\n</tools>\n\nTo call a function, reply with a JSON object inside @TC_OPEN@@TC_CLOSE@ tags:\n' -}}
    {{- '@TC_OPEN@\n{"name": <function-name>, "arguments": <args-json-object>}\n@TC_CLOSE@' -}}
  {%- endif -%}
  {{- '@IM_END@\n' -}}
{%- endif -%}
{%- for message in messages -%}
  {%- if loop.first and has_system -%}
  {%- elif message.role == 'assistant' -%}
    {{- '@IM_START@assistant\n' -}}
    {%- generation -%}
      {%- set reasoning = message.reasoning_content or message.thinking -%}
      {%- if reasoning -%}
        {{- '@THINK_OPEN@\n' + (reasoning | trim) + '\n@THINK_CLOSE@\n\n' -}}
      {%- endif -%}
      {{- render_content(message.content) -}}
      {%- if message.tool_calls -%}
        {%- for call in message.tool_calls -%}
          {%- set fn = call.function if call.function is defined else call -%}
          {%- if message.content or not loop.first -%}{{- '\n' -}}{%- endif -%}
          {{- '@TC_OPEN@\n{"name": ' + (fn.name | tojson) + ', "arguments": ' -}}
          {%- if fn.arguments is string -%}{{- fn.arguments -}}{%- else -%}{{- fn.arguments | tojson -}}{%- endif -%}
          {{- '}\n@TC_CLOSE@' -}}
        {%- endfor -%}
      {%- endif -%}
      {{- '@IM_END@' -}}
    {%- endgeneration -%}
    {{- '\n' -}}
  {%- elif message.role == 'tool' -%}
    {{- '@IM_START@tool\n@TR_OPEN@\n' + render_content(message.content) + '\n@TR_CLOSE@@IM_END@\n' -}}
  {%- else -%}
    {{- '@IM_START@' + message.role + '\n' + render_content(message.content) + '@IM_END@\n' -}}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{- '@IM_START@assistant\n' -}}
  {%- if enable_thinking is defined and not enable_thinking -%}
    {{- '@THINK_OPEN@\n\n@THINK_CLOSE@\n\n' -}}
  {%- endif -%}
{%- endif -%}
"""


def build_chat_template(tokens: SpecialTokens, default_system_prompt: str = "") -> str:
    """The Jinja template with this vocabulary's marker strings filled in."""
    filled = _TEMPLATE.strip("\n")
    for key, value in {
        "@IMAGE@": tokens.image, "@IM_START@": tokens.im_start, "@IM_END@": tokens.im_end,
        "@THINK_OPEN@": tokens.think_open, "@THINK_CLOSE@": tokens.think_close,
        "@TC_OPEN@": tokens.tool_call_open, "@TC_CLOSE@": tokens.tool_call_close,
        "@TR_OPEN@": tokens.tool_response_open, "@TR_CLOSE@": tokens.tool_response_close,
        "@HAS_DEFAULT_SYSTEM@": "true" if default_system_prompt else "false",
        # the default prompt is data, not template code: a Jinja string literal
        "@DEFAULT_SYSTEM@": _jinja_string(default_system_prompt),
    }.items():
        filled = filled.replace(key, value)
    return filled


def _jinja_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"
