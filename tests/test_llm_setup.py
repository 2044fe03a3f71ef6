"""Wiring the LLM backend: settings, project prompt templates, tone, and the offline default."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.errors import SettingsError
from bot.knowledge import KnowledgeAnswerer, KnowledgeBase
from bot.llm.answerer import LLMAnswerer
from bot.llm.backend import build_llm
from bot.llm.client import LLMClient
from bot.llm.prompts import PromptTemplates
from bot.ports import AnswerRequest
from bot.project import Project, load_project
from bot.settings import Settings
from bot.testing.openai_double import OpenAIDouble, Reply

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROJECT = Path(__file__).parent / "projects" / "llm_shop"


@pytest.fixture(scope="module")
def project() -> Project:
    return load_project(PROJECT)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[OpenAIDouble]:
    async with OpenAIDouble() as double:
        yield double


def settings(**env: str) -> Settings:
    return Settings.from_env(env, env_file=None)


async def test_no_model_means_no_llm(project: Project) -> None:
    assert build_llm(settings(), project, knowledge=None, offline=None) is None
    # a key alone (set for other tools) does not switch the LLM on
    assert build_llm(settings(OPENAI_API_KEY="sk-x"), project, knowledge=None, offline=None) is None


async def test_settings_fail_loudly_by_name(project: Project) -> None:
    with pytest.raises(SettingsError, match="OPENAI_BASE_URL"):
        build_llm(settings(KEFU_LLM_MODEL="m"), project, knowledge=None, offline=None)
    with pytest.raises(SettingsError, match="KEFU_LLM_ROUTING"):
        settings(KEFU_LLM_ROUTING="sometimes")
    with pytest.raises(SettingsError, match="KEFU_LLM_APPROVED_ONLY"):
        settings(KEFU_LLM_APPROVED_ONLY="perhaps")
    with pytest.raises(SettingsError, match="KEFU_LLM_TIMEOUT"):
        settings(KEFU_LLM_TIMEOUT="soon")
    with pytest.raises(SettingsError, match="OPENAI_BASE_URL"):
        settings(OPENAI_BASE_URL="localhost:11434")
    parsed = settings(KEFU_LLM_ROUTING="Always", KEFU_LLM_APPROVED_ONLY="yes")
    assert (parsed.llm_routing, parsed.llm_approved_only) == ("always", True)


async def test_a_local_server_needs_no_key(project: Project, server: OpenAIDouble) -> None:
    llm = build_llm(
        settings(OPENAI_BASE_URL=server.base_url, KEFU_LLM_MODEL="qwen2.5:7b"),
        project,
        knowledge=None,
        offline=None,
    )
    assert llm is not None
    server.script(Reply(text="hello"))
    completion = await llm.client.complete([{"role": "user", "content": "hi"}], purpose="test")
    assert completion.text == "hello"
    assert server.requests[-1].body["model"] == "qwen2.5:7b"
    await llm.close()


async def test_a_project_overrides_templates_one_by_one(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "persona.jinja2").write_text(
        "You are Xiaomei, the tea shop's assistant.\n", encoding="utf-8"
    )
    templates = PromptTemplates(tmp_path)
    rendered = templates.render(
        "answer", kind="search", language_name="English", passages=[], facts={}, history=[]
    )
    assert rendered.startswith("You are Xiaomei, the tea shop's assistant.\nRules you always keep")
    rasa_style = tmp_path / "my_command_prompt.jinja2"
    rasa_style.write_text(
        "Flows: {% for f in available_flows %}{{ f.name }} {% endfor %}\nUser: {{ user_message }}",
        encoding="utf-8",
    )
    templates = PromptTemplates(tmp_path, overrides={"commands": rasa_style})
    assert templates.render(
        "commands", available_flows=[{"name": "track_order"}], user_message="hi"
    ) == ("Flows: track_order \nUser: hi")
    with pytest.raises(SettingsError, match=r"missing\.jinja2"):
        PromptTemplates(tmp_path, overrides={"commands": tmp_path / "missing.jinja2"})


async def test_templates_render_in_a_sandbox(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "persona.jinja2").write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8"
    )
    with pytest.raises(Exception, match="unsafe"):
        PromptTemplates(tmp_path).render("persona")


async def test_an_upset_customer_gets_a_calm_apologetic_tone(
    project: Project, server: OpenAIDouble
) -> None:
    client = LLMClient(model="m", base_url=server.base_url, timeout=5)
    answerer = LLMAnswerer(client=client, domain=project.domain, templates=PromptTemplates(PROJECT))
    request = AnswerRequest(
        text="where is my parcel, this is the third time I ask!!",
        language="en",
        kind="search",
        conversation_id="rest:angry",
        sentiment=-0.8,
    )
    server.script(Reply(text="NOT_SURE"), Reply(text="NOT_SURE"))
    await answerer.answer(request)
    assert "Tone: the customer is upset. Be calm and apologetic" in server.requests[-1].system_text
    await answerer.answer(AnswerRequest(**{**request.__dict__, "sentiment": 0.4}))
    assert "Tone:" not in server.requests[-1].system_text
    await client.close()


async def test_the_circuit_open_answers_offline_without_waiting(
    project: Project, server: OpenAIDouble
) -> None:
    client = LLMClient(model="m", base_url=server.base_url, timeout=5)
    client.breaker.failed(now=float("inf"))  # opened now, as far as any clock can tell
    client.breaker.threshold = 1
    client.breaker.failed(now=float("inf"))
    knowledge = KnowledgeBase.from_directory(PROJECT / "knowledge")
    answerer = LLMAnswerer(
        client=client,
        domain=project.domain,
        templates=PromptTemplates(PROJECT),
        knowledge=knowledge,
        offline=KnowledgeAnswerer(knowledge),
    )
    before = len(server.requests)
    answer = await answerer.answer(
        AnswerRequest(
            text="how many days does standard delivery take in mainland China",
            language="en",
            kind="search",
            conversation_id="rest:open",
        )
    )
    assert answer.text is not None and answer.text.startswith("Standard delivery takes 3 to 5")
    assert len(server.requests) == before
    await client.close()


async def test_the_reference_shop_has_a_persona(tmp_path: Path) -> None:
    root = Path(__file__).parent.parent
    assert (root / "prompts" / "persona.jinja2").is_file()
    shutil.copytree(root / "prompts", tmp_path / "prompts")
    rendered = PromptTemplates(tmp_path).render("persona")
    assert "Kefu Shop" in rendered


async def test_validate_reports_a_broken_prompt_template(tmp_path: Path) -> None:
    shutil.copytree(PROJECT, tmp_path / "shop", ignore=shutil.ignore_patterns(".kefu"))
    (tmp_path / "shop" / "prompts").mkdir()
    broken = tmp_path / "shop" / "prompts" / "answer.jinja2"
    broken.write_text("You help.\n{% if passages %}\nno end\n", encoding="utf-8")
    from bot.errors import ProjectError

    with pytest.raises(ProjectError) as caught:
        load_project(tmp_path / "shop")
    (problem,) = caught.value.problems
    assert problem.file == str(broken) and problem.line is not None
    assert problem.message.startswith("prompt template: Unexpected end of template")


async def test_a_rasa_prompt_template_setting_replaces_the_command_prompt(
    project: Project, server: OpenAIDouble, tmp_path: Path
) -> None:
    template = tmp_path / "command_prompt.jinja2"
    template.write_text("Flows: {{ available_flows | length }}", encoding="utf-8")
    llm = build_llm(
        settings(
            OPENAI_BASE_URL=server.base_url,
            KEFU_LLM_MODEL="m",
            KEFU_LLM_PROMPT_TEMPLATE=str(template),
        ),
        project,
        knowledge=None,
        offline=None,
    )
    assert llm is not None
    assert llm.router.templates.render("commands", available_flows=[1, 2]) == "Flows: 2"
    await llm.close()
