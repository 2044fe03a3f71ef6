"""Domain responses: parsing ``responses:`` YAML and rendering a variation into a BotMessage.

Rendering follows Rasa's natural-language generator: channel-specific variations first,
conditional variations whose slot conditions hold before unconditioned ones, then
``{slot}``/``{context.key}`` interpolation (or a sandboxed Jinja2 template when the variation's
metadata says ``template: jinja``). Templates are compiled once per domain because rendering
runs on every bot turn.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from bot.domain import Domain, ResponseVariation
from bot.errors import Problem
from bot.events import BotMessage, Button
from bot.flows.conditions import compile_condition
from bot.yamlio import line_of

logger = logging.getLogger(__name__)

_Report = Callable[[str], None]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w-]*(?:\.[\w-]+)?)\}")
_CONTEXT_PREFIX = "context."
_DEFAULT = ""
"""Key of the default-language text among a variation's translations."""
_JINJA = SandboxedEnvironment(
    autoescape=False, finalize=lambda value: "" if value is None else value
)
"""None renders as nothing, as in ``{slot}`` templates; the sandbox keeps authors off internals."""


def parse_responses(
    data: Any, file: str
) -> tuple[dict[str, tuple[ResponseVariation, ...]], list[Problem]]:
    """Parse a ``responses:`` mapping; malformed variations become problems, never exceptions."""
    if data is None:
        return {}, []
    if not isinstance(data, Mapping):
        return {}, [
            Problem(file, line_of(data), "'responses' must map response names to variations")
        ]
    responses: dict[str, tuple[ResponseVariation, ...]] = {}
    problems: list[Problem] = []
    for name, raw in data.items():
        line = line_of(data, name)
        if not isinstance(raw, list) or not raw:
            problems.append(Problem(file, line, f"response '{name}' has no variations"))
            continue
        item_lines = getattr(raw, "item_lines", [])
        variations = []
        for index, item in enumerate(raw):
            where = item_lines[index] if index < len(item_lines) else line
            variation = _parse_variation(item, f"response '{name}'", file, where, problems)
            if variation is not None:
                variations.append(variation)
        responses[str(name)] = tuple(variations)
    return responses, problems


def _parse_variation(
    item: Any, label: str, file: str, line: int | None, problems: list[Problem]
) -> ResponseVariation | None:
    def problem(message: str) -> None:
        problems.append(Problem(file, line, f"{label}: {message}"))

    if not isinstance(item, Mapping):
        problem("a variation must be a mapping with text, image, custom or buttons")
        return None
    buttons, button_translations = _parse_buttons(item.get("buttons"), problem)
    text, image, custom = item.get("text"), item.get("image"), item.get("custom")
    if text is None and image is None and custom is None and not buttons:
        problem("a variation needs text, image, custom or buttons")
        return None
    if custom is not None and not isinstance(custom, Mapping):
        problem("'custom' must be a mapping")
        custom = None
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        problem("'metadata' must be a mapping")
        metadata = {}
    translation = _parse_translation(item.get("translation"), "text", problem)
    if metadata.get("template") == "jinja":
        for source in (text, *translation.values()):
            _check_jinja(source, problem)
    return ResponseVariation(
        text=None if text is None else str(text),
        buttons=buttons,
        image=None if image is None else str(image),
        custom=dict(custom) if custom is not None else None,
        channel=None if item.get("channel") is None else str(item["channel"]),
        condition=_parse_condition(item.get("condition"), problem),
        translation=translation,
        button_translations=button_translations,
        metadata=dict(metadata),
    )


def _parse_buttons(
    raw: Any, problem: _Report
) -> tuple[tuple[Button, ...], dict[str, tuple[str, ...]]]:
    if raw is None:
        return (), {}
    if not isinstance(raw, list):
        problem("'buttons' must be a list of {title, payload}")
        return (), {}
    buttons: list[Button] = []
    translations: list[dict[str, str]] = []
    for item in raw:
        if not isinstance(item, Mapping) or item.get("title") is None:
            problem("each button needs a 'title' and a 'payload'")
            continue
        buttons.append(Button(title=str(item["title"]), payload=str(item.get("payload") or "")))
        translations.append(_parse_translation(item.get("translation"), "title", problem))
    languages = dict.fromkeys(lang for t in translations for lang in t)
    titles = {
        lang: tuple(t.get(lang, b.title) for b, t in zip(buttons, translations, strict=True))
        for lang in languages
    }
    return tuple(buttons), titles


def _parse_translation(raw: Any, key: str, problem: _Report) -> dict[str, str]:
    """``{lang: text}``; Rasa Pro's ``{lang: {text: ...}}`` (``title`` for buttons) too."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problem("'translation' must map language codes to text")
        return {}
    out: dict[str, str] = {}
    for lang, value in raw.items():
        if isinstance(value, Mapping):
            value = value.get(key)
        if value is None or isinstance(value, Mapping | list):
            problem(f"translation '{lang}' needs a {key}")
            continue
        out[str(lang)] = str(value)
    return out


def _parse_condition(raw: Any, problem: _Report) -> tuple[dict[str, Any], ...]:
    """Rasa's two forms: a list of ``{type: slot, name, value}``, or a predicate string
    (``slots.card_block_type == "permanent"``) kept as ``{type: predicate, predicate: ...}``."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        parsed = compile_condition(raw)
        if not parsed.is_valid:
            problem(f"condition {raw!r} does not parse: {'; '.join(parsed.errors)}")
            return ()
        return ({"type": "predicate", "predicate": raw},)
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for item in items:
        if (
            not isinstance(item, Mapping)
            or item.get("type", "slot") != "slot"
            or not isinstance(item.get("name"), str)
        ):
            problem("a condition must be a list of {type: slot, name, value}")
            continue
        out.append({"type": "slot", "name": item["name"], "value": item.get("value")})
    return tuple(out)


def _check_jinja(source: Any, problem: _Report) -> None:
    if source is None:
        return
    try:
        _JINJA.parse(str(source))
    except TemplateError as err:
        problem(f"invalid Jinja template: {err}")


# --- rendering -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    name: str
    written: str


_Parts = tuple[str | _Ref, ...]


class _Text:
    """A compiled text: literal parts and placeholders, or a Jinja template."""

    def __init__(self, source: str, *, jinja: bool) -> None:
        self.source = source
        self.jinja: Template | None = None
        self.parts: _Parts = ()
        if jinja:
            try:
                self.jinja = _JINJA.from_string(source)
            except TemplateError:
                logger.warning("invalid Jinja template kept as plain text: %r", source)
        if self.jinja is None:
            self.parts = _split(source)

    def render(self, scope: _Scope) -> str:
        if self.jinja is not None:
            try:
                return self.jinja.render(scope.jinja_namespace())
            except Exception:  # a template must never break a turn; the author sees the log
                logger.exception("Jinja template failed: %r", self.source)
                return self.source
        if len(self.parts) == 1 and isinstance(self.parts[0], str):
            return self.parts[0]
        return "".join(p if isinstance(p, str) else scope.lookup(p) for p in self.parts)


def _split(source: str) -> _Parts:
    parts: list[str | _Ref] = []
    cursor = 0
    for match in _PLACEHOLDER.finditer(source):
        parts += [source[cursor : match.start()], _Ref(match[1], match[0])]
        cursor = match.end()
    parts.append(source[cursor:])
    return tuple(p for p in parts if p != "") or ("",)


class _Scope:
    """What placeholders may name: domain slots (unset = empty) and ``context.<key>``."""

    def __init__(
        self, slot_names: frozenset[str], slots: Mapping[str, Any], context: Mapping[str, Any]
    ) -> None:
        self.slot_names = slot_names
        self.slots = slots
        self.context = context

    def lookup(self, ref: _Ref) -> str:
        if ref.name.startswith(_CONTEXT_PREFIX):
            key = ref.name[len(_CONTEXT_PREFIX) :]
            if key not in self.context:
                return ref.written
            return _show(self.context[key])
        if ref.name in self.slots:
            return _show(self.slots[ref.name])
        return "" if ref.name in self.slot_names else ref.written

    def jinja_namespace(self) -> dict[str, Any]:
        values = {name: None for name in self.slot_names} | dict(self.slots)
        return {
            **values,
            "slots": values,
            "context": dict(self.context),
            "value": self.context.get("value"),
        }


def _show(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True)
class _Variation:
    """A variation prepared for rendering: compiled texts per language, button templates."""

    source: ResponseVariation
    text: dict[str, _Text]
    titles: dict[str, tuple[_Text, ...]]
    payloads: tuple[_Text, ...]
    image: _Text | None

    @classmethod
    def compile(cls, variation: ResponseVariation) -> _Variation:
        jinja = variation.metadata.get("template") == "jinja"
        texts = dict(variation.translation)
        if variation.text is not None:
            texts[_DEFAULT] = variation.text
        titles = dict(variation.button_translations)
        titles[_DEFAULT] = tuple(b.title for b in variation.buttons)
        return cls(
            source=variation,
            text={lang: _Text(t, jinja=jinja) for lang, t in texts.items()},
            titles={lang: tuple(_Text(t, jinja=jinja) for t in ts) for lang, ts in titles.items()},
            payloads=tuple(_Text(b.payload, jinja=jinja) for b in variation.buttons),
            image=_Text(variation.image, jinja=jinja) if variation.image is not None else None,
        )

    def holds(self, slots: Mapping[str, Any]) -> bool:
        return all(
            compile_condition(c["predicate"]).evaluate(slots)
            if c["type"] == "predicate"
            else slots.get(c["name"]) == c.get("value")
            for c in self.source.condition
        )

    def pick(self, texts: Mapping[str, Any], language: str | None) -> Any:
        """The entry for ``language`` (or its primary subtag), else the default one."""
        if language is not None:
            for code in (language, language.split("-")[0]):
                if code in texts:
                    return texts[code]
        return texts.get(_DEFAULT)


class ResponseRenderer:
    """Turns a response name into the BotMessage to send, for one domain."""

    def __init__(self, domain: Domain) -> None:
        self._default_language = domain.default_language
        self._slot_names = frozenset(domain.slots)
        self._responses = {
            name: tuple(_Variation.compile(v) for v in variations)
            for name, variations in domain.responses.items()
        }

    def greeting(self, language: str) -> BotMessage | None:
        """The shop's greeting (``utter_greet``) in a browser's ``language`` (``zh-CN``:
        Chinese), for a channel to show before the customer writes; None without one."""
        code = language.replace("_", "-").split("-")[0].lower()
        return self.render(
            "utter_greet",
            conversation_id="",
            slots={},
            language=code or self._default_language,
            channel=None,
        )

    def render(
        self,
        name: str,
        *,
        conversation_id: str,
        slots: Mapping[str, Any],
        language: str | None,
        channel: str | None,
        context: Mapping[str, Any] | None = None,
        rng: random.Random | None = None,
    ) -> BotMessage | None:
        """None when the domain has no such response, or no variation suits channel and slots."""
        variations = self._responses.get(name)
        if not variations:
            return None
        candidates = _candidates(variations, slots, channel)
        if not candidates:
            return None
        chosen = rng.choice(candidates) if rng is not None else candidates[0]
        lang = language if language and language != self._default_language else None
        scope = _Scope(self._slot_names, slots, context or {})
        text = chosen.pick(chosen.text, lang)
        titles = chosen.pick(chosen.titles, lang)
        source = chosen.source
        return BotMessage(
            conversation_id=conversation_id,
            text=text.render(scope) if text is not None else None,
            buttons=tuple(
                Button(title=t.render(scope), payload=p.render(scope))
                for t, p in zip(titles, chosen.payloads, strict=True)
            ),
            image=chosen.image.render(scope) if chosen.image is not None else None,
            custom=_render_custom(source.custom, scope),
            response=name,
            metadata=dict(source.metadata),
        )


def _candidates(
    variations: tuple[_Variation, ...], slots: Mapping[str, Any], channel: str | None
) -> list[_Variation]:
    """Rasa's preference: this channel's variations, then channel-less ones; within each,
    conditional variations that hold, then unconditioned ones."""
    groups = [[v for v in variations if v.source.channel == channel]] if channel else []
    groups.append([v for v in variations if v.source.channel is None])
    for group in groups:
        conditional = [v for v in group if v.source.condition and v.holds(slots)]
        if conditional:
            return conditional
        plain = [v for v in group if not v.source.condition]
        if plain:
            return plain
    return []


def _render_custom(value: Any, scope: _Scope) -> Any:
    """Interpolate strings anywhere inside a ``custom`` payload, as Rasa does."""
    if isinstance(value, str):
        return _Text(value, jinja=False).render(scope)
    if isinstance(value, Mapping):
        return {k: _render_custom(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_custom(v, scope) for v in value]
    return value
