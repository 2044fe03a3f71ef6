"""`kefu validate`'s checks: every problem of a project at once, each with file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

from bot.errors import Problem
from bot.project import inspect_project
from bot.validation import sort_problems

PROJECTS = Path(__file__).parent / "projects"


def problems_of(root: Path) -> list[tuple[str, int | None, str]]:
    project, problems = inspect_project(root)
    assert project is not None
    return [(p.file.removeprefix(f"{root}/"), p.line, p.message) for p in problems]


def test_a_valid_project_has_no_problems() -> None:
    assert problems_of(PROJECTS / "minimal") == []
    assert problems_of(PROJECTS / "rasa") == []


def test_broken_project_reports_each_problem_where_it_is() -> None:
    found = problems_of(PROJECTS / "broken")
    expected = [
        ("data/nlu.yml", 5, "intent 'undeclared' has examples but is not declared in the domain"),
        ("domain.yml", 10, "slot 'order_id': unknown entity 'tracking_number'"),
        ("domain.yml", 12, "slot 'colour': a categorical slot needs a list of 'values'"),
        ("domain.yml", 15, "slot 'size': invalid type 'enormous'"),
        ("domain.yml", 19, "slot 'mood': unknown mapping type 'from_vibes'"),
        ("domain.yml", 23, "response 'utter_empty' has no variations"),
        (
            "domain.yml",
            25,
            "response 'utter_blank': a variation needs text, image, custom or buttons",
        ),
        ("domain.yml", 28, "response 'utter_conditional': condition on unknown slot 'ghost_slot'"),
        ("domain.yml", 32, "duplicate key 'utter_greet' (first on line 21)"),
        ("flows/bad.yml", 4, "invalid YAML"),
        ("flows/flows.yml", 2, "flow 'order': unknown intent 'unknown_intent' in nlu_trigger"),
        ("flows/flows.yml", 2, "flow 'order': unknown slot 'ghost_persisted' in persisted_slots"),
        ("flows/flows.yml", 9, "flow 'order': no response 'utter_ask_unknown_slot'"),
        ("flows/flows.yml", 9, "flow 'order': unknown slot 'unknown_slot' in collect"),
        ("flows/flows.yml", 10, "flow 'order': no response 'utter_ask_order_id'"),
        ("flows/flows.yml", 10, "flow 'order': unknown response 'utter_missing_rejection'"),
        ("flows/flows.yml", 10, "flow 'order': unknown slot 'ghost_rejection' in condition"),
        ("flows/flows.yml", 14, "flow 'order': unknown slot 'ghost_set' in set_slots"),
        ("flows/flows.yml", 16, "flow 'order': unknown response 'utter_missing'"),
        ("flows/flows.yml", 17, "flow 'order': unknown action 'action_missing'"),
        ("flows/flows.yml", 18, "flow 'order': unknown slot 'ghost_next' in condition"),
        ("flows/flows.yml", 26, "flow 'goes_nowhere': link to unknown flow 'no_such_flow'"),
        ("flows/flows.yml", 30, "flow 'loops': its call step targets the flow itself"),
        ("flows/more.yml", 2, "flow 'loops' is also defined in"),
    ]
    assert len(found) == len(expected)
    for (file, line, message), (want_file, want_line, want_start) in zip(
        found, expected, strict=True
    ):
        assert (file, line) == (want_file, want_line), message
        assert message.startswith(want_start)


def write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_templates_ask_actions_and_builtin_intents_are_accepted(tmp_path: Path) -> None:
    root = Path(shutil.copytree(PROJECTS / "minimal", tmp_path / "p"))
    write(
        root,
        "domain/extra.yml",
        "slots:\n  email:\n    type: text\nactions:\n  - action_ask_email\n",
    )
    write(
        root,
        "flows/extra.yml",
        "flows:\n"
        "  ask_email:\n"
        "    description: Ask for an e-mail through a custom action.\n"
        "    nlu_trigger:\n"
        "      - intent: restart\n"
        "    steps:\n"
        "      - collect: email\n"
        '      - action: "{{context.utter}}"\n'
        "      - action: action_listen\n"
        "      - call: track_order\n",
    )
    assert problems_of(root) == []


def test_duplicates_across_domain_files_and_unknown_mapping_intents(tmp_path: Path) -> None:
    root = Path(shutil.copytree(PROJECTS / "rasa", tmp_path / "p"))
    write(
        root,
        "domain/zz_more.yml",
        "slots:\n"
        "  amount:\n"
        "    type: float\n"
        "  topic:\n"
        "    type: text\n"
        "    mappings:\n"
        "      - type: from_intent\n"
        "        intent: no_such_intent\n"
        "        value: x\n"
        "responses:\n"
        "  utter_greet:\n"
        "    - text: '{{ slots.amount'\n"
        "      metadata:\n"
        "        template: jinja\n",
    )
    found = problems_of(root)
    assert [(f, line) for f, line, _ in found] == [
        ("domain/zz_more.yml", 2),
        ("domain/zz_more.yml", 7),
        ("domain/zz_more.yml", 11),
        ("domain/zz_more.yml", 12),
    ]
    assert found[0][2] == "slot 'amount' is also defined in " + f"{root}/domain/slots.yml:3"
    assert found[1][2] == "slot 'topic': unknown intent 'no_such_intent'"
    assert found[2][2].startswith("response 'utter_greet' is also defined in")
    assert found[3][2].startswith("response 'utter_greet': invalid Jinja template")


def test_bad_slot_and_session_shapes(tmp_path: Path) -> None:
    write(
        tmp_path,
        "domain.yml",
        "intents: greet\n"
        "slots:\n"
        "  a: 3\n"
        "  b:\n"
        "    mappings:\n"
        "      - type: from_entity\n"
        "session_config:\n"
        "  session_expiration_time: soon\n"
        "  carry_over_slots_to_new_session: maybe\n",
    )
    messages = [(line, message) for _, line, message in problems_of(tmp_path)]
    assert messages == [
        (1, "'intents' must be a list"),
        (3, "slot 'a': a slot must be a mapping with a 'type'"),
        (4, "slot 'b': no type; use one of text, bool, categorical, float, list, any"),
        (6, "slot 'b': a from_entity mapping needs an 'entity'"),
        (8, "'session_expiration_time' must be minutes (a number >= 0)"),
        (9, "'carry_over_slots_to_new_session' must be true or false"),
    ]


def test_sort_problems_orders_and_drops_repeats() -> None:
    problems = [
        Problem("b", 1, "x"),
        Problem("a", None, "z"),
        Problem("a", 3, "y"),
        Problem("b", 1, "x"),
    ]
    assert sort_problems(problems) == [
        Problem("a", None, "z"),
        Problem("a", 3, "y"),
        Problem("b", 1, "x"),
    ]
