"""A Rasa project's ``config.yml``, ``endpoints.yml`` and ``credentials.yml``, read for what
kefu can use.

What maps onto kefu's settings (the environment still wins, see `bot.settings`):

- ``endpoints.yml`` ``action_endpoint.url`` -> ``KEFU_ACTION_ENDPOINT``; ``actions_module`` is
  the in-process package (kefu loads the project's ``actions``);
- the model group that the pipeline's LLM command generator names (``llm.model_group``), or
  its inline ``llm.model``: ``model`` -> ``KEFU_LLM_MODEL``, ``api_base`` -> ``OPENAI_BASE_URL``,
  ``timeout`` -> ``KEFU_LLM_TIMEOUT``; the generator's ``prompt_template`` ->
  ``KEFU_LLM_PROMPT_TEMPLATE`` (a path inside the project);
- ``config.yml`` ``language`` is the bot's default language (read by `bot.project`).

What kefu does not do is a :class:`~bot.errors.Problem` in ``warnings``, naming the key: a
``credentials.yml`` channel other than REST (kefu's channels come from its settings), a voice
channel's silence handling, a vector store, an NLG rephraser, tracker and lock stores,
event brokers, NLU pipeline components (kefu trains its own classifier), model providers that
do not speak OpenAI's API. Nothing here raises: a malformed file is a warning too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import Problem
from bot.yamlio import line_of, load_yaml_file

COMMAND_GENERATORS = frozenset(
    {
        "LLMCommandGenerator",
        "SingleStepLLMCommandGenerator",
        "CompactLLMCommandGenerator",
        "SearchReadyLLMCommandGenerator",
        "MultiStepLLMCommandGenerator",
    }
)
"""Pipeline components that turn a message into commands with an LLM."""
_PIPELINE_OK = COMMAND_GENERATORS | {"NLUCommandAdapter"}
_POLICIES_OK = frozenset({"FlowPolicy", "EnterpriseSearchPolicy"})
_OPENAI_COMPATIBLE = frozenset({"openai", "self-hosted", "vllm", "ollama", "rasa", "litellm"})
_CONFIG_KEYS = frozenset({"recipe", "language", "assistant_id", "pipeline", "policies"})
_CONFIG_UNSUPPORTED = {
    "additional_languages": "kefu answers in the customer's language from each response's "
    "'translation'",
}
_CHANNEL_HINTS = {
    "telegram": "set TELEGRAM_BOT_TOKEN (and TELEGRAM_WEBHOOK_URL for webhooks)",
    "slack": "kefu uses Slack as the agents' desk (SLACK_BOT_TOKEN, SLACK_HANDOFF_CHANNEL)",
    "socketio": "kefu serves its own web chat at /",
}
_ENDPOINT_UNSUPPORTED = {
    "tracker_store": "kefu keeps conversations in KEFU_DATABASE_URL",
    "lock_store": "kefu locks conversations in its own database",
    "event_broker": "kefu has no event broker",
    "nlg": "kefu renders the domain's responses itself (no rephraser)",
    "models": "kefu trains its classifier at start-up",
    "vector_store": "kefu answers from the Markdown in knowledge/",
    "interaction_handling": "voice channels (silence timeouts) are not supported",
    "contextual_response_rephraser": "kefu renders the domain's responses itself",
}


@dataclass(frozen=True)
class RasaConfig:
    """The settings a Rasa project's configuration files give, and what kefu ignores."""

    values: dict[str, str] = field(default_factory=dict)
    """Setting names (``KEFU_LLM_MODEL``...) to values, the lowest layer under the environment."""
    warnings: tuple[Problem, ...] = ()
    search_source: Path | None = None
    """The folder an ``EnterpriseSearchPolicy`` vector store indexes (``./docs``): kefu reads
    its Markdown as the knowledge base when the project has no ``knowledge/``."""


def read_rasa_config(root: Path) -> RasaConfig:
    """Read ``root``'s ``config.yml`` and ``endpoints.yml`` (both optional)."""
    reader = _Reader(root)
    config = reader.load("config")
    endpoints = reader.load("endpoints")
    generator = reader.pipeline(config)
    reader.policies(config)
    reader.endpoints(endpoints, generator)
    reader.credentials(reader.load("credentials"))
    return RasaConfig(
        values=reader.values, warnings=tuple(reader.warnings), search_source=reader.search_source
    )


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.values: dict[str, str] = {}
        self.warnings: list[Problem] = []
        self.files: dict[str, str] = {}
        self.search_source: Path | None = None

    def warn(self, kind: str, line: int | None, message: str) -> None:
        self.warnings.append(Problem(self.files.get(kind, str(self.root)), line, message))

    def load(self, kind: str) -> Mapping[str, Any]:
        for suffix in (".yml", ".yaml"):
            path = self.root / f"{kind}{suffix}"
            if path.is_file():
                self.files[kind] = str(path)
                data, problems = load_yaml_file(path)
                self.warnings.extend(problems)
                if data is None:
                    return {}
                if not isinstance(data, Mapping):
                    self.warn(kind, line_of(data), f"{kind}{suffix} must be a mapping; ignored")
                    return {}
                return data
        return {}

    def pipeline(self, config: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Check the pipeline; return the (first) LLM command generator's settings."""
        for key in config:
            if key in _CONFIG_UNSUPPORTED:
                reason = _CONFIG_UNSUPPORTED[key]
                self.warn("config", line_of(config, key), f"'{key}' ignored: {reason}")
            elif key not in _CONFIG_KEYS:
                self.warn("config", line_of(config, key), f"'{key}' is not used by kefu")
        generator = None
        for item in _components(config, "pipeline", self):
            name = str(item.get("name"))
            where = line_of(item)
            if name not in _PIPELINE_OK:
                self.warn(
                    "config",
                    where,
                    f"pipeline component '{name}' ignored: kefu trains its own intent "
                    "classifier and entity extractor from the NLU data",
                )
            elif name in COMMAND_GENERATORS and generator is None:
                generator = item
                template = item.get("prompt_template")
                if isinstance(template, str) and template:
                    if (self.root / template).is_file():
                        self.values["KEFU_LLM_PROMPT_TEMPLATE"] = str(self.root / template)
                    else:
                        self.warn(
                            "config",
                            line_of(item, "prompt_template"),
                            f"'prompt_template' {template!r} not found",
                        )
        return generator

    def policies(self, config: Mapping[str, Any]) -> None:
        for item in _components(config, "policies", self):
            name = str(item.get("name"))
            if name not in _POLICIES_OK:
                self.warn("config", line_of(item), f"policy '{name}' ignored: kefu runs flows")
                continue
            store = item.get("vector_store") if name == "EnterpriseSearchPolicy" else None
            if store is None:
                continue
            source = store.get("source") if isinstance(store, Mapping) else None
            folder = self.root / source if isinstance(source, str) and source else None
            if folder is not None and folder.is_dir():
                self.search_source = folder
                use = f"kefu searches the Markdown in {source} (when there is no knowledge/)"
                use += " with BM25, no embeddings"
            else:
                use = "kefu answers from the Markdown in knowledge/"
            self.warn("config", line_of(item, "vector_store"), f"'vector_store' ignored: {use}")

    def endpoints(self, endpoints: Mapping[str, Any], generator: Mapping[str, Any] | None) -> None:
        for key in endpoints:
            if key in _ENDPOINT_UNSUPPORTED:
                where = line_of(endpoints, key)
                self.warn("endpoints", where, f"'{key}' ignored: {_ENDPOINT_UNSUPPORTED[key]}")
        self.action_endpoint(
            endpoints.get("action_endpoint"), line_of(endpoints, "action_endpoint")
        )
        llm = generator.get("llm") if generator is not None else None
        if not isinstance(llm, Mapping):
            return
        model: Mapping[str, Any] | None = llm
        group_id = llm.get("model_group")
        if group_id is not None:
            model = _model_of_group(endpoints.get("model_groups"), str(group_id))
            if model is None:
                self.warn(
                    "config",
                    line_of(llm, "model_group"),
                    f"model group '{group_id}' is not in endpoints.yml 'model_groups'",
                )
                return
        if model is not None:
            self.model(model)

    def action_endpoint(self, section: Any, line: int | None) -> None:
        if section is None:
            return
        if not isinstance(section, Mapping):
            self.warn("endpoints", line, "'action_endpoint' must be a mapping; ignored")
            return
        url = section.get("url")
        if isinstance(url, str) and url:
            if "://" in url:
                self.values["KEFU_ACTION_ENDPOINT"] = url
            else:
                where = line_of(section, "url")
                self.warn("endpoints", where, f"action_endpoint url {url!r} has no scheme")
        module = section.get("actions_module")
        if isinstance(module, str) and module != "actions":
            self.warn(
                "endpoints",
                line_of(section, "actions_module"),
                f"actions_module '{module}' ignored: kefu loads the project's 'actions' package",
            )

    def credentials(self, channels: Mapping[str, Any]) -> None:
        """Rasa's channels: kefu's come from its own settings; REST is always on."""
        for key in channels:
            if key == "rest":
                continue
            hint = _CHANNEL_HINTS.get(str(key), "kefu's channels are REST, the web chat, Telegram")
            self.warn("credentials", line_of(channels, key), f"channel '{key}' ignored: {hint}")

    def model(self, model: Mapping[str, Any]) -> None:
        provider = str(model.get("provider", "openai"))
        if provider not in _OPENAI_COMPATIBLE:
            self.warn(
                "endpoints",
                line_of(model, "provider") or line_of(model),
                f"model provider '{provider}' ignored: kefu's LLM speaks OpenAI's API "
                "(set OPENAI_BASE_URL to an OpenAI-compatible server)",
            )
            return
        name = model.get("model")
        if isinstance(name, str) and name:
            self.values["KEFU_LLM_MODEL"] = name.removeprefix("openai/")
        api_base = model.get("api_base")
        if isinstance(api_base, str) and "://" in api_base:
            self.values["OPENAI_BASE_URL"] = api_base
        timeout = model.get("timeout")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            self.values["KEFU_LLM_TIMEOUT"] = str(timeout)


def _components(config: Mapping[str, Any], key: str, reader: _Reader) -> list[Mapping[str, Any]]:
    items = config.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        reader.warn("config", line_of(config, key), f"'{key}' must be a list; ignored")
        return []
    out = [i for i in items if isinstance(i, Mapping) and "name" in i]
    if len(out) != len(items):
        reader.warn("config", line_of(config, key), f"'{key}' entries need a 'name'")
    return out


def _model_of_group(groups: Any, group_id: str) -> Mapping[str, Any] | None:
    """The first model of the group ``group_id`` (kefu uses one model, no routing)."""
    for group in groups if isinstance(groups, list) else ():
        if isinstance(group, Mapping) and str(group.get("id")) == group_id:
            models = group.get("models")
            if isinstance(models, list) and models and isinstance(models[0], Mapping):
                return models[0]
    return None
