"""Project loading: discovery of every layout, merging over the default patterns, hashing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.errors import ProjectError
from bot.flows.model import ActionStep
from bot.project import inspect_project, load_project

PROJECTS = Path(__file__).parent / "projects"


def copy_project(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(PROJECTS / name, tmp_path / name))


def test_minimal_project_loads_with_domain_records() -> None:
    project = load_project(PROJECTS / "minimal")
    domain = project.domain
    assert domain.intents == ("greet", "track_order")
    assert domain.entities == ("order_id", "city")
    assert domain.slots["order_status"].values == ("shipped", "pending")
    assert domain.slots["order_id"].mappings[0].entity == "order_id"
    assert domain.slots["quantity"].min_value == 1.0
    assert domain.slots["is_gift"].initial_value is False
    assert domain.session_config.session_expiration_time == 30.0
    assert domain.session_config.carry_over_slots_to_new_session is False
    assert domain.actions == ("action_check_order",)
    assert domain.responses["utter_greet"][0].translation == {"zh": "您好！有什么可以帮您？"}
    assert project.nlu.intents == ("greet", "track_order")
    assert project.actions_package == "actions"
    assert project.knowledge_dir == PROJECTS / "minimal" / "knowledge"
    assert project.test_paths == (PROJECTS / "minimal/tests/conversations/greet.yml",)
    assert "track_order" in project.flows


def test_default_patterns_are_merged_under_the_project() -> None:
    project = load_project(PROJECTS / "minimal")
    completed = project.flows.get("pattern_completed")
    assert completed is not None and completed.is_pattern
    assert [s.action for s in completed.steps if isinstance(s, ActionStep)] == ["utter_greet"]
    assert project.flows.get("pattern_cancel_flow") is not None
    text = project.domain.responses["utter_can_do_something_else"][0].text
    assert text == "Anything else I can do for you at the shop?"
    assert project.domain.has_response("utter_flow_cancelled_rasa")
    assert "continue_interrupted_flow_confirmation" in project.domain.slots
    raw = project.domain.raw
    assert raw["responses"]["utter_can_do_something_else"][0]["text"].startswith("Anything")
    assert "utter_ask_rephrase" in raw["responses"]
    assert raw["intents"][1] == {"track_order": {"use_entities": ["order_id"]}}


def test_rasa_layout_with_domain_folder_and_data_loads() -> None:
    project = load_project(PROJECTS / "rasa")
    assert project.domain.default_language == "zh"  # from config.yml
    assert project.domain.intents == ("greet", "check_balance")
    assert set(project.domain.slots) >= {"amount", "continue_interrupted_flow_confirmation"}
    assert project.domain.actions == ("action_check_balance",)
    assert project.domain.session_config.session_expiration_time == 0.0
    assert (
        project.domain.responses["utter_can_do_something_else"][0].text == "还有什么需要帮忙的吗？"
    )
    chitchat = project.flows.get("pattern_chitchat")
    assert chitchat is not None and chitchat.file is not None
    assert chitchat.file.endswith("patterns.yml")
    assert "check_balance" in project.flows
    assert project.actions_package == "actions"
    assert project.knowledge_dir is None
    assert project.test_paths == (PROJECTS / "rasa/e2e_tests/greet.yml",)


def test_domain_language_wins_over_config(tmp_path: Path) -> None:
    root = copy_project("rasa", tmp_path)
    (root / "domain" / "language.yml").write_text("language: fr\n", encoding="utf-8")
    assert load_project(root).domain.default_language == "fr"


def test_content_hash_follows_file_contents(tmp_path: Path) -> None:
    root = copy_project("minimal", tmp_path)
    first = load_project(root).content_hash
    assert load_project(root).content_hash == first
    nlu = root / "flows" / "nlu.yml"
    nlu.write_text(nlu.read_text(encoding="utf-8") + "      - hey there\n", encoding="utf-8")
    assert load_project(root).content_hash != first


def test_load_project_raises_with_every_problem() -> None:
    with pytest.raises(ProjectError) as caught:
        load_project(PROJECTS / "broken")
    assert len(caught.value.problems) > 10
    assert "domain.yml:15" in str(caught.value)


def test_missing_directory_is_unusable(tmp_path: Path) -> None:
    project, problems = inspect_project(tmp_path / "nowhere")
    assert project is None
    assert problems[0].message == "project directory not found"


def test_project_without_domain_is_reported_but_usable(tmp_path: Path) -> None:
    project, problems = inspect_project(tmp_path)
    assert project is not None and "pattern_completed" in project.flows
    assert [p.message for p in problems] == ["no domain.yml or domain/ folder"]


def test_invalid_yaml_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    root = copy_project("minimal", tmp_path)
    (root / "domain.yml").write_text("intents: [greet\n", encoding="utf-8")
    (root / "flows" / "binary.yml").write_bytes(b"\xff\xfe\x00")
    project, problems = inspect_project(root)
    assert project is not None
    found = {(Path(p.file).name, p.message.split(":")[0]) for p in problems}
    assert ("domain.yml", "invalid YAML") in found
    assert ("binary.yml", "cannot read file") in found


def test_unknown_top_level_keys_and_non_mapping_files(tmp_path: Path) -> None:
    root = copy_project("minimal", tmp_path)
    (root / "flows" / "typo.yml").write_text("version: '3.1'\nflow:\n  x: 1\n", encoding="utf-8")
    (root / "flows" / "list.yml").write_text("- a\n- b\n", encoding="utf-8")
    (root / "flows" / "empty.yml").write_text("", encoding="utf-8")
    _, problems = inspect_project(root)
    assert [(Path(p.file).name, p.line, p.message) for p in problems] == [
        ("list.yml", 1, "a project file must be a mapping of keys"),
        ("typo.yml", 2, "unknown key 'flow'"),
    ]
