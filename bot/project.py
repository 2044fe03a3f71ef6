"""Load a project directory (Rasa CALM layout) into one immutable :class:`Project`.

The domain comes from ``domain.yml`` or a ``domain/`` folder; flows, NLU data and extra domain
parts (``responses:``, ``slots:``...) from any YAML under ``flows/`` or ``data/``. kefu's default
patterns load first, so a project flow, response or slot of the same name replaces theirs.
Loading never stops at the first problem: :func:`inspect_project` returns them all, with file
and line, for ``kefu validate``; :func:`load_project` refuses a project that has any.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from bot.domain import (
    SLOT_TYPES,
    Domain,
    ResponseVariation,
    SessionConfig,
    SlotDefinition,
    SlotMapping,
)
from bot.errors import Problem, ProjectError
from bot.flows import Flow, FlowsList, parse_flows
from bot.rasa_config import read_rasa_config
from bot.responses import parse_responses
from bot.understanding.training_data import TrainingData, parse_nlu
from bot.validation import sort_problems, validate
from bot.yamlio import line_of, parse_yaml

DEFAULT_PATTERNS = Path(__file__).parent / "patterns" / "default_flows.yml"
_YAML_SUFFIXES = (".yml", ".yaml")
_DATA_DIRS = ("flows", "data")
_TEST_DIRS = ("tests/conversations", "tests/e2e_test_cases", "e2e_tests")
_LIST_KEYS = ("intents", "entities", "actions")
DOMAIN_KEYS = frozenset(
    {*_LIST_KEYS, "version", "slots", "responses", "forms", "session_config", "language", "config"}
)
_DATA_KEYS = DOMAIN_KEYS | {"flows", "nlu", "rules", "stories"}


@dataclass(frozen=True)
class Source:
    """One loaded YAML file; validation reads keys and lines from ``data``."""

    file: str
    kind: str
    """``domain``, ``data``, ``config`` or ``default`` (kefu's patterns)."""
    text: str
    data: Any
    flows: tuple[Flow, ...] = ()
    """Every flow the file defines, even one a later file replaces, so all get checked."""


@dataclass(frozen=True)
class Project:
    """Everything a bot needs from its project directory, merged and parsed."""

    root: Path
    domain: Domain
    """The project domain merged over the default patterns' responses and slots."""
    flows: FlowsList
    """Default patterns plus project flows; a project flow with a pattern's id replaces it."""
    nlu: TrainingData
    actions_package: str | None
    """``"actions"`` when ``root/actions/`` is a package or ``root/actions.py`` exists."""
    knowledge_dir: Path | None
    test_paths: tuple[Path, ...]
    """Conversation test files under tests/conversations/, tests/e2e_test_cases/ or e2e_tests/."""
    content_hash: str
    """sha256 over every loaded file, so caches (trained models) know when to rebuild."""


def load_project(root: Path) -> Project:
    """Load and validate ``root``; raise :class:`ProjectError` listing every problem found."""
    project, problems = inspect_project(root)
    if problems or project is None:
        raise ProjectError(problems)
    return project


def inspect_project(root: Path) -> tuple[Project | None, list[Problem]]:
    """Load ``root`` and return it with all its problems, sorted by file and line.

    Never raises. The project is None only when ``root`` is not a directory; otherwise the
    parts that did load are there, so tools can still show what they can.
    """
    if not root.is_dir():
        return None, [Problem(str(root), None, "project directory not found")]
    project, sources, problems = _load(root)
    return project, sort_problems(problems + validate(project, sources=sources))


def _load(root: Path) -> tuple[Project, list[Source], list[Problem]]:
    problems: list[Problem] = []
    digest = hashlib.sha256()
    sources = [_default_source()]
    digest.update(sources[0].text.encode("utf-8"))
    for path, kind in _discover(root, problems):
        source = _read(path, kind, root, digest, problems)
        if source is not None:
            sources.append(source)
    domain_parts: list[tuple[str, Mapping[str, Any]]] = []
    flows: dict[str, Flow] = {}
    nlu = TrainingData()
    language: str | None = None
    for index, source in enumerate(sources):
        data = source.data
        if source.kind == "config":
            if "language" in source.data:
                language = _parse_language(source.data, source.file, problems)
            continue
        allowed = DOMAIN_KEYS if source.kind == "domain" else _DATA_KEYS
        for key in data:
            if key not in allowed:
                problems.append(Problem(source.file, line_of(data, key), f"unknown key '{key}'"))
        domain_parts.append((source.file, data))
        if "flows" in data and source.kind != "domain":
            parsed, flow_problems = parse_flows(
                data["flows"], source.file, is_pattern_file=source.kind == "default"
            )
            problems.extend(flow_problems)
            flows.update((flow.id, flow) for flow in parsed)
            sources[index] = replace(source, flows=tuple(parsed))
        if "nlu" in data and source.kind == "data":
            training, nlu_problems = parse_nlu(data["nlu"], source.file)
            problems.extend(nlu_problems)
            nlu = nlu.merge(training)
    domain, domain_problems = _build_domain(domain_parts, config_language=language)
    problems.extend(domain_problems)
    project = Project(
        root=root,
        domain=domain,
        flows=FlowsList(flows),
        nlu=nlu,
        actions_package=_actions_package(root),
        knowledge_dir=_knowledge_dir(root),
        test_paths=tuple(_yaml_files(*(root / d for d in _TEST_DIRS))),
        content_hash=digest.hexdigest(),
    )
    return project, sources, problems


@lru_cache(maxsize=1)
def _default_source() -> Source:
    text = DEFAULT_PATTERNS.read_text(encoding="utf-8")
    data, problems = parse_yaml(text, str(DEFAULT_PATTERNS))
    if problems or not isinstance(data, Mapping):  # a broken install, not a project problem
        raise RuntimeError(f"kefu's default patterns are invalid: {problems}")
    return Source(str(DEFAULT_PATTERNS), "default", text, data)


def _discover(root: Path, problems: list[Problem]) -> Iterator[tuple[Path, str]]:
    """Every project YAML file in load order, with its kind."""
    for name in ("config.yml", "config.yaml"):
        if (root / name).is_file():
            yield root / name, "config"
    domain_files = [root / n for n in ("domain.yml", "domain.yaml") if (root / n).is_file()]
    domain_files += _yaml_files(root / "domain")
    if not domain_files:
        problems.append(Problem(str(root), None, "no domain.yml or domain/ folder"))
    for path in domain_files:
        yield path, "domain"
    for path in _yaml_files(*(root / d for d in _DATA_DIRS)):
        yield path, "data"


def _yaml_files(*folders: Path) -> list[Path]:
    """YAML files under ``folders``, recursively and sorted, skipping hidden ones."""
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found += sorted(
                p
                for p in folder.rglob("*")
                if p.suffix in _YAML_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            )
    return found


def _read(path: Path, kind: str, root: Path, digest: Any, problems: list[Problem]) -> Source | None:
    file = str(path)
    try:
        content = path.read_bytes()
        text = content.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        problems.append(Problem(file, None, f"cannot read file: {err}"))
        return None
    digest.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0" + content + b"\0")
    data, yaml_problems = parse_yaml(text, file)
    problems.extend(yaml_problems)
    if data is None:
        return None
    if not isinstance(data, Mapping):
        problems.append(Problem(file, line_of(data), "a project file must be a mapping of keys"))
        return None
    return Source(file, kind, text, data)


def _knowledge_dir(root: Path) -> Path | None:
    """``knowledge/``, else the folder a Rasa ``EnterpriseSearchPolicy`` indexes (``docs/``)."""
    if (root / "knowledge").is_dir():
        return root / "knowledge"
    return read_rasa_config(root).search_source


def _actions_package(root: Path) -> str | None:
    if (root / "actions" / "__init__.py").is_file() or (root / "actions.py").is_file():
        return "actions"
    return None


# --- domain ---------------------------------------------------------------------------------

_MAPPING_TYPES = frozenset(
    {
        "from_llm",
        "from_text",
        "from_entity",
        "from_intent",
        "from_trigger_intent",
        "controlled",
        "custom",
    }
)


def _build_domain(
    parts: list[tuple[str, Mapping[str, Any]]], *, config_language: str | None
) -> tuple[Domain, list[Problem]]:
    """Merge domain parts in order (later wins) into a :class:`Domain` and its raw dict."""
    problems: list[Problem] = []
    lists: dict[str, dict[str, Any]] = {key: {} for key in _LIST_KEYS}
    raw: dict[str, Any] = {"slots": {}, "responses": {}, "forms": {}, "session_config": {}}
    slots: dict[str, SlotDefinition] = {}
    responses: dict[str, tuple[ResponseVariation, ...]] = {}
    session = SessionConfig()
    language: str | None = None
    for file, data in parts:
        for key in _LIST_KEYS:
            for name, item in _named_items(data, key, file, problems):
                lists[key].setdefault(name, item)
        section = data.get("slots")
        if section is not None and not isinstance(section, Mapping):
            problems.append(
                Problem(file, line_of(data, "slots"), "'slots' must map slot names to slots")
            )
        elif section:
            for name, body in section.items():
                slots[str(name)] = _parse_slot(
                    str(name), body, file, line_of(section, name), problems
                )
                raw["slots"][str(name)] = body
        parsed, response_problems = parse_responses(data.get("responses"), file)
        problems.extend(response_problems)
        responses.update(parsed)
        raw["responses"].update({n: data["responses"][n] for n in parsed})
        if isinstance(data.get("forms"), Mapping):
            raw["forms"].update(data["forms"])
        if "session_config" in data:
            session = _parse_session(data, session, file, problems)
            raw["session_config"] = dict(data["session_config"] or {})
        if "language" in data:
            language = _parse_language(data, file, problems) or language
    raw.update({key: list(items.values()) for key, items in lists.items()})
    domain = Domain(
        intents=tuple(lists["intents"]),
        entities=tuple(lists["entities"]),
        slots=slots,
        responses=responses,
        actions=tuple(lists["actions"]),
        session_config=session,
        default_language=language or config_language or "en",
        raw=raw,
    )
    return domain, problems


def _named_items(
    data: Mapping[str, Any], key: str, file: str, problems: list[Problem]
) -> Iterator[tuple[str, Any]]:
    """Names of a domain list whose items are ``name`` or ``{name: {options}}``."""
    value = data.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        problems.append(Problem(file, line_of(data, key), f"'{key}' must be a list"))
        return
    lines = getattr(value, "item_lines", [])
    for index, item in enumerate(value):
        if isinstance(item, str) and item:
            yield item, item
        elif isinstance(item, Mapping) and len(item) == 1:
            yield str(next(iter(item))), item
        else:
            line = lines[index] if index < len(lines) else line_of(value)
            problems.append(Problem(file, line, f"each entry of '{key}' must be a name"))


def _parse_slot(
    name: str, body: Any, file: str, line: int | None, problems: list[Problem]
) -> SlotDefinition:
    def problem(message: str, at: int | None = line) -> None:
        problems.append(Problem(file, at or line, f"slot '{name}': {message}"))

    if not isinstance(body, Mapping):
        problem("a slot must be a mapping with a 'type'")
        return SlotDefinition(name)
    slot_type = body.get("type")
    if slot_type not in SLOT_TYPES:
        found = "no type" if slot_type is None else f"invalid type {slot_type!r}"
        problem(
            f"{found}; use one of {', '.join(SLOT_TYPES)}",
            line_of(body, "type") if "type" in body else line,
        )
        slot_type = "any"
    values = body.get("values")
    if slot_type == "categorical" and (not isinstance(values, list) or not values):
        problem("a categorical slot needs a list of 'values'")
    bounds = {}
    for key in ("min_value", "max_value"):
        bound = body.get(key)
        if bound is not None and (not isinstance(bound, int | float) or isinstance(bound, bool)):
            problem(f"'{key}' must be a number", line_of(body, key))
            bound = None
        bounds[key] = None if bound is None else float(bound)
    return SlotDefinition(
        name=name,
        type=str(slot_type),
        values=tuple(str(v) for v in values) if isinstance(values, list) else (),
        mappings=_parse_mappings(body.get("mappings"), line_of(body, "mappings"), problem),
        initial_value=body.get("initial_value"),
        influence_conversation=bool(body.get("influence_conversation", False)),
        **bounds,
    )


def _parse_mappings(
    raw: Any, line: int | None, problem: Callable[[str, int | None], None]
) -> tuple[SlotMapping, ...]:
    if raw is None:
        return (SlotMapping(type="from_llm"),)
    if not isinstance(raw, list):
        problem("'mappings' must be a list", line)
        return ()
    lines = getattr(raw, "item_lines", [])
    mappings = []
    for index, item in enumerate(raw):
        at = lines[index] if index < len(lines) else line
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind not in _MAPPING_TYPES:
            problem(
                f"unknown mapping type {kind!r}; use one of {', '.join(sorted(_MAPPING_TYPES))}", at
            )
            continue
        entity = item.get("entity")
        if kind == "from_entity" and not isinstance(entity, str):
            problem("a from_entity mapping needs an 'entity'", at)
            continue
        conditions = item.get("conditions") or []
        if not isinstance(conditions, list) or not all(isinstance(c, Mapping) for c in conditions):
            problem("mapping 'conditions' must be a list of mappings", at)
            conditions = []
        mappings.append(
            SlotMapping(
                type=kind,
                entity=entity if isinstance(entity, str) else None,
                role=_optional_text(item.get("role")),
                group=_optional_text(item.get("group")),
                intent=_names(item.get("intent")),
                not_intent=_names(item.get("not_intent")),
                value=item.get("value"),
                action=_optional_text(item.get("action")),
                conditions=tuple(dict(c) for c in conditions),
            )
        )
    return tuple(mappings)


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def _parse_session(
    data: Mapping[str, Any], current: SessionConfig, file: str, problems: list[Problem]
) -> SessionConfig:
    value = data["session_config"]
    if not isinstance(value, Mapping):
        problems.append(
            Problem(file, line_of(data, "session_config"), "'session_config' must be a mapping")
        )
        return current
    expiration = value.get("session_expiration_time", current.session_expiration_time)
    carry_over = value.get(
        "carry_over_slots_to_new_session", current.carry_over_slots_to_new_session
    )
    if not isinstance(expiration, int | float) or isinstance(expiration, bool) or expiration < 0:
        problems.append(
            Problem(
                file,
                line_of(value, "session_expiration_time"),
                "'session_expiration_time' must be minutes (a number >= 0)",
            )
        )
        expiration = current.session_expiration_time
    if not isinstance(carry_over, bool):
        problems.append(
            Problem(
                file,
                line_of(value, "carry_over_slots_to_new_session"),
                "'carry_over_slots_to_new_session' must be true or false",
            )
        )
        carry_over = current.carry_over_slots_to_new_session
    return SessionConfig(float(expiration), carry_over)


def _parse_language(data: Mapping[str, Any], file: str, problems: list[Problem]) -> str | None:
    language = data.get("language")
    if isinstance(language, str) and language:
        return language
    problems.append(Problem(file, line_of(data, "language"), "'language' must be a language code"))
    return None
