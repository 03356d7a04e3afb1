"""LLM access for every LLM stage: client (retries, concurrency, cache), strict parsing, local server."""

from tasks.llm.client import LLMClient, LLMConfig, LLMError, LocalServerConfig, load_llm_config
from tasks.llm.parsing import ParseError, extract_tag, extract_tags, parse_json_like

__all__ = ["LLMClient", "LLMConfig", "LLMError", "LocalServerConfig", "load_llm_config",
           "ParseError", "extract_tag", "extract_tags", "parse_json_like"]
