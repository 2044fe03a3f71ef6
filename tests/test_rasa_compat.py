"""Rasa Pro 3.21 projects under kefu: built-ins, predicate conditions, configuration files,
action modules that cannot load, stubbed actions, and ``kefu init``."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from bot.actions import InProcessActionRunner
from bot.app import App
from bot.cli import main
from bot.domain import SlotDefinition
from bot.errors import ProjectError, TargetNotEmptyError
from bot.events import UserMessage
from bot.knowledge import KnowledgeBase
from bot.project import load_project
from bot.rasa_config import read_rasa_config
from bot.responses import ResponseRenderer
from bot.settings import Settings
from bot.starter import init_project
from bot.testing.e2e import run_tests
from bot.testing.e2e_format import parse_test_file
from bot.understanding.values import parse_slot_value


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


DOMAIN = """\
    version: "3.1"
    slots:
      block_type:
        type: categorical
        values: [permanent, temporary]
      full_list:
        type: bool
    responses:
      utter_confirm:
        - condition: slots.block_type == "permanent"
          text: "Block it for good?"
        - condition: slots.block_type != "permanent"
          text: "Freeze it for now?"
      utter_list:
        - condition: slots.full_list
          text: "Everything:"
        - condition: not slots.full_list
          text: "The latest:"
      utter_hello:
        - text: "Hello!"
      utter_done:
        - text: "Done."
    actions:
      - action_lookup
      - action_fine
"""


# --- domain and patterns ------------------------------------------------------------------


def test_predicate_conditions_choose_the_variation(tmp_path: Path) -> None:
    project = load_project(write(tmp_path, {"domain.yml": DOMAIN}))
    renderer = ResponseRenderer(project.domain)

    def said(name: str, slots: dict[str, object]) -> str | None:
        message = renderer.render(
            name, slots=slots, conversation_id="rest:a", language=None, channel=None
        )
        return message.text if message else None

    assert said("utter_confirm", {"block_type": "permanent"}) == "Block it for good?"
    assert said("utter_confirm", {"block_type": "temporary"}) == "Freeze it for now?"
    assert said("utter_list", {"full_list": True}) == "Everything:"
    assert said("utter_list", {"full_list": None}) == "The latest:"


def test_a_predicate_that_does_not_parse_or_names_an_unknown_slot_is_a_problem(
    tmp_path: Path,
) -> None:
    bad = 'responses:\n  utter_bad:\n    - condition: slots.nope == "x"\n      text: a\n'
    bad += "  utter_worse:\n    - condition: slots.block_type ==\n      text: b\n"
    with pytest.raises(ProjectError) as caught:
        load_project(write(tmp_path, {"domain.yml": DOMAIN, "data/bad.yml": bad}))

    messages = "\n".join(p.message for p in caught.value.problems)
    assert "condition on unknown slot 'nope'" in messages
    assert "does not parse" in messages


def test_rasa_built_ins_need_no_declaration(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path,
            {
                "domain.yml": DOMAIN,
                "data/flows.yml": """\
                    flows:
                      chat:
                        description: Small talk and its routing.
                        steps:
                          - action: utter_free_chitchat_response
                          - action: action_reset_routing
                          - set_slots:
                              - consecutive_silence_timeouts: 0.0
                          - action: utter_ask_still_there
                          - action: utter_inform_hangup
                          - action: action_hangup
                """,
            },
        )
    )

    for pattern in (
        "pattern_user_silence",
        "pattern_repeat_bot_messages",
        "pattern_skip_question",
        "pattern_session_end",
        "pattern_code_change",
        "pattern_customer_satisfaction",
        "pattern_validate_slot",
    ):
        assert pattern in project.flows
    assert project.domain.slots["silence_timeout"].initial_value == 30.0


@pytest.fixture
async def agent(tmp_path: Path) -> App:
    project = load_project(
        write(
            tmp_path / "p",
            {
                "domain.yml": DOMAIN,
                "data/flows.yml": """\
                    flows:
                      hello:
                        description: Greet the customer who says hello.
                        steps:
                          - action: utter_hello
                      again:
                        description: Repeat what was said.
                        nlu_trigger:
                          - intent: repeat
                        steps:
                          - link: pattern_repeat_bot_messages
                """,
                "data/nlu.yml": "nlu:\n  - intent: repeat\n    examples: |\n      - say again\n",
                "domain/intents.yml": "intents: [repeat]\n",
            },
        )
    )
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    created = await App.create(project, settings=settings)
    yield created  # type: ignore[misc]
    await created.close()


async def send(agent: App, text: str) -> list[str | None]:
    message = UserMessage(
        channel="rest",
        conversation_id="rest:silent",
        sender_id="s",
        text=text,
        payload=text if text.startswith("/") else None,
    )
    return [m.text for m in (await agent.turns.process(message)).messages]


async def test_silence_first_repeats_then_asks_then_hangs_up(agent: App) -> None:
    assert "Hello!" in await send(agent, "hello")

    assert "Hello!" in await send(agent, "/silence_timeout")
    assert "Are you still there?" in await send(agent, "/silence_timeout")
    assert any("close our conversation" in (t or "") for t in await send(agent, "/silence_timeout"))


# --- configuration files --------------------------------------------------------------------


ENDPOINTS = """\
    action_endpoint:
      url: "http://127.0.0.1:5055/webhook"
    tracker_store:
      type: redis
    model_groups:
      - id: commands
        models:
          - provider: openai
            model: gpt-4o-mini
            api_base: "http://127.0.0.1:8900/v1"
            timeout: 7
      - id: elsewhere
        models:
          - provider: anthropic
            model: claude
"""
CONFIG = """\
    language: zh
    pipeline:
      - name: WhitespaceTokenizer
      - name: CompactLLMCommandGenerator
        prompt_template: prompts/commands.jinja2
        llm:
          model_group: commands
        flow_retrieval:
          active: false
    policies:
      - name: FlowPolicy
      - name: EnterpriseSearchPolicy
        vector_store:
          type: faiss
      - name: IntentlessPolicy
"""


def test_config_and_endpoints_map_onto_settings(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {"endpoints.yml": ENDPOINTS, "config.yml": CONFIG, "prompts/commands.jinja2": "{{x}}"},
    )

    settings = Settings.from_env({}, env_file=None, project_dir=root)

    assert settings.action_endpoint == "http://127.0.0.1:5055/webhook"
    assert settings.llm_model == "gpt-4o-mini"
    assert settings.openai_base_url == "http://127.0.0.1:8900/v1"
    assert settings.llm_timeout == 7
    assert settings.llm_prompt_template == str(root / "prompts/commands.jinja2")


def test_the_environment_wins_over_the_project_files(tmp_path: Path) -> None:
    root = write(tmp_path, {"endpoints.yml": ENDPOINTS, "config.yml": CONFIG})
    environ = {"KEFU_LLM_MODEL": "local-model", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}

    settings = Settings.from_env(environ, env_file=None, project_dir=root)

    assert settings.llm_model == "local-model"
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"


def test_what_kefu_does_not_do_is_a_warning_naming_the_key(tmp_path: Path) -> None:
    root = write(tmp_path, {"endpoints.yml": ENDPOINTS, "config.yml": CONFIG})

    warnings = [str(w) for w in read_rasa_config(root).warnings]

    assert any("endpoints.yml:3: 'tracker_store' ignored" in w for w in warnings)
    assert any("'WhitespaceTokenizer' ignored" in w for w in warnings)
    assert any("'vector_store' ignored" in w for w in warnings)
    assert any("policy 'IntentlessPolicy' ignored" in w for w in warnings)
    assert any("'prompt_template' 'prompts/commands.jinja2' not found" in w for w in warnings)


def test_a_malformed_config_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    root = write(tmp_path, {"endpoints.yml": "- a list\n", "config.yml": "pipeline: [oops\n"})

    config = read_rasa_config(root)

    assert config.values == {}
    assert len(config.warnings) == 2


def test_validate_prints_warnings_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, {"domain.yml": DOMAIN, "endpoints.yml": ENDPOINTS})

    assert main(["validate", "--project", str(root)]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "'tracker_store' ignored" in out


# --- actions that cannot load, stubs, unsupported assertions -------------------------------


ACTIONS = {
    "actions/__init__.py": "",
    "actions/needs_rasa.py": """\
        from rasa.shared.utils.io import write_text_file  # Rasa itself: not installed
    """,
    "actions/lookup.py": """\
        from actions.needs_rasa import write_text_file
    """,
    "actions/fine.py": """\
        from rasa_sdk import Action


        class ActionFine(Action):
            def name(self):
                return "action_fine"

            def run(self, dispatcher, tracker, domain):
                dispatcher.utter_message(response="utter_done")
                return []
    """,
}


def test_a_partial_runner_leaves_out_modules_that_cannot_import(tmp_path: Path) -> None:
    root = write(tmp_path, ACTIONS)

    runner = InProcessActionRunner.from_project(root, partial=True)

    assert runner is not None
    assert runner.action_names == {"action_fine"}
    [problem] = runner.load_problems
    assert problem.file.endswith("needs_rasa.py") and problem.line == 1
    assert "actions.lookup, actions.needs_rasa" in problem.message
    assert "No module named 'rasa'" in problem.message
    with pytest.raises(ProjectError):
        InProcessActionRunner.from_project(root)


async def test_only_the_tests_reaching_a_missing_action_fail_and_stubs_answer(
    tmp_path: Path,
) -> None:
    root = write(
        tmp_path,
        {
            **ACTIONS,
            "domain.yml": DOMAIN + "    intents: [lookup, fine]\n",
            "data/flows.yml": """\
                flows:
                  lookup:
                    description: Look up the customer's card.
                    nlu_trigger:
                      - intent: lookup
                    steps:
                      - action: action_lookup
                      - action: utter_confirm
                  fine:
                    description: Check that everything is fine.
                    nlu_trigger:
                      - intent: fine
                    steps:
                      - action: action_fine
            """,
            "data/nlu.yml": """\
                nlu:
                  - intent: lookup
                    examples: |
                      - look up my card
                      - find my card
                  - intent: fine
                    examples: |
                      - is everything fine
                      - all good?
            """,
            "tests/e2e_test_cases/cases.yml": """\
                stub_custom_actions:
                  stubbed lookup::action_lookup:
                    events:
                      - event: slot
                        name: block_type
                        value: permanent
                    responses: []
                test_cases:
                  - test_case: unstubbed lookup
                    steps:
                      - user: "/lookup"
                      - utter: utter_confirm
                  - test_case: stubbed lookup
                    steps:
                      - user: "/lookup"
                        assertions:
                          - generative_response_is_grounded:
                              threshold: 0.9
                      - slot_was_set:
                          - block_type: permanent
                      - utter: utter_confirm
                      - bot: "Block it for good?"
                  - test_case: fine
                    steps:
                      - user: "/fine"
                      - utter: utter_done
            """,
        },
    )
    output = io.StringIO()

    report = await run_tests(load_project(root), output=output, settings=Settings())

    printed = output.getvalue()
    assert report.passed == 2 and report.failed == 1, printed
    assert "FAILED unstubbed lookup" in printed
    assert printed.count("No module named 'rasa'") == 1
    assert "generative_response_is_grounded (needs an LLM judge; not checked)" in printed


def test_stubs_of_the_file_and_of_one_case(tmp_path: Path) -> None:
    path = (
        write(
            tmp_path,
            {
                "t.yml": """\
                stub_custom_actions:
                  action_a:
                    events: []
                    responses:
                      - text: from the file
                  second::action_a:
                    events: []
                    responses:
                      - text: for the second case
                test_cases:
                  - test_case: first
                    steps:
                      - user: hi
                  - test_case: second
                    steps:
                      - user: hi
            """
            },
        )
        / "t.yml"
    )

    [first, second], problems = parse_test_file(path)

    assert problems == []
    assert first.stubs["action_a"].responses == [{"text": "from the file"}]
    assert second.stubs["action_a"].responses == [{"text": "for the second case"}]


# --- kefu init ------------------------------------------------------------------------------


async def test_init_writes_a_starter_that_validates_and_passes_its_tests(tmp_path: Path) -> None:
    target = tmp_path / "bot"

    files = init_project(target)

    assert Path("domain.yml") in files and Path("actions/orders.py") in files
    assert not any("__pycache__" in str(f) for f in files)
    output = io.StringIO()
    report = await run_tests(load_project(target), output=output, settings=Settings())
    assert report.ok and report.passed >= 7, output.getvalue()
    with pytest.raises(TargetNotEmptyError):
        init_project(target)


def test_init_command_refuses_a_directory_with_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")

    assert main(["init", str(tmp_path)]) == 1
    assert "not an empty directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_search_policys_folder_is_the_knowledge_base_when_there_is_none(
    tmp_path: Path,
) -> None:
    root = write(
        tmp_path,
        {
            "domain.yml": DOMAIN,
            "config.yml": CONFIG.replace("type: faiss", "type: faiss\n          source: ./docs"),
            "docs/restart_router.txt": "Unplug the router for thirty seconds, then plug it in.",
        },
    )

    project = load_project(root)

    assert project.knowledge_dir == root / "docs"
    passages = KnowledgeBase.from_directory(root / "docs").search("how do I restart my router")
    assert passages and passages[0].title == "restart router"
    warnings = [str(w) for w in read_rasa_config(root).warnings]
    assert any("kefu searches the Markdown in ./docs (when" in w for w in warnings)
    (root / "knowledge").mkdir()
    assert load_project(root).knowledge_dir == root / "knowledge"


def test_rasa_channels_other_than_rest_are_warnings(tmp_path: Path) -> None:
    root = write(tmp_path, {"credentials.yml": "rest:\ntelegram:\n  access_token: x\nrasa: {}\n"})

    warnings = [str(w) for w in read_rasa_config(root).warnings]

    assert len(warnings) == 2
    assert "credentials.yml:2: channel 'telegram' ignored: set TELEGRAM_BOT_TOKEN" in warnings[0]
    assert "channel 'rasa' ignored" in warnings[1]


# --- answers without an LLM -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("it's @foo", "@foo"),
        ("It’s Jane Bar", "Jane Bar"),
        ("just Bart", "Bart"),
        ("the handle is @bar.", "@bar"),
        ("@MaryLu", "@MaryLu"),
        (
            "it's broken since Monday and the screen flickers",
            "it's broken since Monday and the screen flickers",
        ),
    ],
)
def test_short_free_text_answers_lose_their_lead_in(text: str, value: str) -> None:
    slot = SlotDefinition("handle", type="text")

    answer = parse_slot_value(slot, text, [], language="en")

    assert answer is not None and answer.value == value


async def test_typing_a_buttons_title_answers_with_its_value(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path / "p",
            {
                "domain.yml": """\
                    version: "3.1"
                    slots:
                      confirm_removal:
                        type: text
                    responses:
                      utter_ask_confirm_removal:
                        - text: "Remove it?"
                          buttons:
                            - title: "Yes"
                              payload: "/SetSlots(confirm_removal=true)"
                            - title: "No, keep it"
                              payload: "/SetSlots(confirm_removal=false)"
                      utter_removed:
                        - text: "Removed."
                      utter_kept:
                        - text: "Kept."
                """,
                "data/flows.yml": """\
                    flows:
                      remove_contact:
                        description: Remove a contact from the list.
                        steps:
                          - collect: confirm_removal
                            next:
                              - if: slots.confirm_removal is true
                                then:
                                  - action: utter_removed
                                    next: END
                              - else:
                                  - action: utter_kept
                                    next: END
                """,
            },
        )
    )
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    bot = await App.create(project, settings=settings)
    try:

        async def say(cid: str, text: str) -> list[str | None]:
            message = UserMessage(channel="rest", conversation_id=cid, sender_id="u", text=text)
            return [m.text for m in (await bot.turns.process(message)).messages]

        assert "Remove it?" in await say("rest:a", "please remove a contact")
        assert "Removed." in await say("rest:a", "yes")
        assert "Remove it?" in await say("rest:b", "please remove a contact")
        assert "Kept." in await say("rest:b", "No, keep it!")
    finally:
        await bot.close()
