"""Jinja2 prompt templates: kefu's defaults, which a project may override file by file.

A project's ``prompts/NAME.jinja2`` replaces kefu's template of that name (``answer``,
``commands``, ``approved``, and the ``persona`` and ``rules`` they include), so a shop can
change its assistant's persona alone. A Rasa project's command prompt template works as the
``commands`` template: it gets the variables Rasa gives its own (``available_flows``,
``current_flow``, ``current_slot``, ``flow_slots``, ``current_conversation``, ``user_message``).
Templates render in Jinja2's sandbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from bot.errors import Problem, SettingsError

_BUILTIN = Path(__file__).parent / "prompt_templates"
PROMPTS_DIR = "prompts"
"""The folder of a project's own templates."""


class PromptTemplates:
    """Renders the named templates, a project's own before kefu's.

    ``overrides`` maps a template name to a file given in configuration (a Rasa
    ``prompt_template``); those render with Jinja2's default whitespace rules, as Rasa renders
    them, while kefu's own and ``prompts/`` templates trim the line after a block tag.
    """

    def __init__(
        self, project_dir: Path | None = None, *, overrides: dict[str, Path] | None = None
    ) -> None:
        folders = [str(project_dir / PROMPTS_DIR)] if project_dir is not None else []
        self._env = SandboxedEnvironment(
            loader=jinja2.FileSystemLoader([*folders, str(_BUILTIN)]),
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # read once: no file check on every render
        )
        self._overrides: dict[str, jinja2.Template] = {}
        plain = SandboxedEnvironment(autoescape=False)
        for name, path in (overrides or {}).items():
            try:
                self._overrides[name] = plain.from_string(path.read_text(encoding="utf-8"))
            except OSError as err:
                raise SettingsError(f"prompt template {path} cannot be read: {err}") from None

    def render(self, name: str, **variables: Any) -> str:
        """The template ``name`` (without ``.jinja2``) rendered with ``variables``, stripped."""
        template = self._overrides.get(name) or self._env.get_template(f"{name}.jinja2")
        return template.render(**variables).strip()


def template_problems(project_dir: Path) -> list[Problem]:
    """A project's ``prompts/*.jinja2`` that do not parse, with file and line."""
    folder = project_dir / PROMPTS_DIR
    problems: list[Problem] = []
    env = SandboxedEnvironment(autoescape=False)
    for path in sorted(folder.glob("*.jinja2")) if folder.is_dir() else ():
        try:
            env.parse(path.read_text(encoding="utf-8"))
        except jinja2.TemplateSyntaxError as err:
            problems.append(Problem(str(path), err.lineno, f"prompt template: {err.message}"))
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Problem(str(path), None, f"prompt template cannot be read: {err}"))
    return problems
