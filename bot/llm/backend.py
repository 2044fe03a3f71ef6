"""Building the LLM backend from settings: one client shared by the answerer and the router."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.errors import SettingsError
from bot.knowledge import KnowledgeBase
from bot.llm.answerer import LLMAnswerer
from bot.llm.client import LLMClient
from bot.llm.prompts import PromptTemplates
from bot.llm.router import LLMRouter
from bot.ports import AnswerBackend
from bot.project import Project
from bot.settings import Settings


@dataclass(frozen=True)
class LLM:
    """The LLM backend's parts, built together: the answer backend and the command source."""

    client: LLMClient
    answerer: LLMAnswerer
    router: LLMRouter

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.close()


def build_llm(
    settings: Settings,
    project: Project,
    *,
    knowledge: KnowledgeBase | None,
    offline: AnswerBackend | None,
) -> LLM | None:
    """The LLM backend the settings ask for, or None when ``KEFU_LLM_MODEL`` is unset."""
    if not settings.llm_model:
        return None
    if not settings.openai_api_key and not settings.openai_base_url:
        raise SettingsError(
            "KEFU_LLM_MODEL is set but neither OPENAI_API_KEY (OpenAI) nor OPENAI_BASE_URL "
            "(a local OpenAI-compatible server) is"
        )
    if settings.llm_timeout <= 0:
        raise SettingsError("KEFU_LLM_TIMEOUT must be more than 0 seconds")
    client = LLMClient(
        model=settings.llm_model,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        timeout=settings.llm_timeout,
    )
    overrides = (
        {"commands": Path(settings.llm_prompt_template)} if settings.llm_prompt_template else None
    )
    templates = PromptTemplates(project.root, overrides=overrides)
    answerer = LLMAnswerer(
        client=client,
        domain=project.domain,
        templates=templates,
        knowledge=knowledge,
        offline=offline,
        approved_only=settings.llm_approved_only,
    )
    router = LLMRouter(
        client=client,
        flows=project.flows,
        domain=project.domain,
        templates=templates,
        mode=settings.llm_routing,
    )
    return LLM(client=client, answerer=answerer, router=router)
