"""The dashboard's words in English and Chinese; a missing Chinese entry falls back to English."""

from __future__ import annotations

LANGUAGES = ("en", "zh")

_EN: dict[str, str] = {
    "title": "kefu — the shop's view",
    "login": "Sign in",
    "token": "API token (KEFU_API_TOKEN)",
    "wrong_token": "That is not the API token.",
    "too_many_tries": "Too many wrong tokens from this address: try again in {} s.",
    "logout": "Sign out",
    "overview": "Figures",
    "conversations": "Conversations",
    "unknown": "Not understood",
    "period": "Period",
    "days": "days",
    "group": "Per",
    "day": "day",
    "week": "week",
    "channel": "Channel",
    "language": "Language",
    "all": "all",
    "apply": "Show",
    "export_csv": "Export CSV",
    "n_conversations": "Conversations",
    "containment": "Containment",
    "handoff_rate": "Handoff rate",
    "claim_time": "Time to claim p50 / p90",
    "handling_time": "Handling time p50 / p90",
    "csat": "CSAT average",
    "csat_response": "Survey response rate",
    "not_understood": "Messages not understood",
    "llm_calls": "LLM calls",
    "llm_failed": "failed",
    "llm_tokens": "LLM tokens (prompt + completion)",
    "llm_per_period": "LLM calls per period",
    "pending": "Still open",
    "per_period": "Conversations per period",
    "containment_per_period": "Containment per period",
    "handoff_reasons": "Handoff reasons",
    "csat_distribution": "CSAT answers (score: count)",
    "top_intents": "Top intents",
    "flows": "Flows: started, completed, cancelled",
    "flow": "Flow",
    "started": "started",
    "completed": "completed",
    "cancelled": "cancelled",
    "by_channel": "By channel",
    "by_language": "By language",
    "definitions": "Definitions",
    "def_conversations": "Conversations: conversations whose first event falls in the period.",
    "def_containment": (
        "Containment: conversations resolved by the bot alone, over those already settled. "
        "Resolved alone = no handoff, the bot answered the customer's last message and understood "
        "it, and the customer confirmed (yes, thanks, bye) or wrote nothing more for {window} "
        "with no task (flow) left half done. "
        "Conversations still inside that window are counted as still open, not in the rate."
    ),
    "def_handoff": (
        "Handoff rate: conversations with a handoff request over all conversations. Reasons as "
        "the desk recorded them (asked, flow, not understood, sentiment...)."
    ),
    "def_times": (
        "Time to claim: from the handoff request to the first agent joining. Handling time: from "
        "the agent joining to the handoff being resolved. p50 is the median, p90 the time nine "
        "handoffs in ten stay under."
    ),
    "def_csat": (
        "CSAT: the survey answers' scores; response rate = answers over resolved handoffs."
    ),
    "def_unknown": (
        "Not understood: customer messages that went to pattern_cannot_handle or were "
        "classified out_of_scope / nlu_fallback."
    ),
    "def_llm": (
        "LLM calls: calls to the language model made on the period's days, in the channel's "
        "turns (the language filter does not apply), failed ones included (no usable answer in "
        "time, an error, or refused at once while recent calls were failing); tokens as the "
        "model reported them for answered calls."
    ),
    "search": "Conversation id contains",
    "intent": "Intent",
    "handoff": "Handoff",
    "any": "any",
    "yes": "yes",
    "no": "no",
    "started_at": "Started",
    "messages": "Messages",
    "reason": "Reason",
    "transcript": "Transcript",
    "masked": "E-mail addresses, phone numbers and card numbers are masked.",
    "not_found": "No such conversation.",
    "groups_help": (
        "Similar messages are grouped with kefu's sentence encoders. Name an intent and export "
        "a group as Rasa NLU examples to add to your training data."
    ),
    "examples": "examples",
    "export_nlu": "Export as NLU examples",
    "intent_name": "Intent name",
    "none": "Nothing to show for this period.",
    "customer": "customer",
    "bot": "bot",
    "agent": "agent",
}

_ZH: dict[str, str] = {
    "title": "kefu 客服 — 店铺视图",
    "login": "登录",
    "token": "API 令牌 (KEFU_API_TOKEN)",
    "wrong_token": "API 令牌不正确。",
    "too_many_tries": "此地址输错令牌次数过多，请 {} 秒后再试。",
    "logout": "退出",
    "overview": "数据",
    "conversations": "会话",
    "unknown": "未理解的消息",
    "period": "时间范围",
    "days": "天",
    "group": "按",
    "day": "天",
    "week": "周",
    "channel": "渠道",
    "language": "语言",
    "all": "全部",
    "apply": "显示",
    "export_csv": "导出 CSV",
    "n_conversations": "会话数",
    "containment": "机器人独立解决率",
    "handoff_rate": "转人工率",
    "claim_time": "接入等待时间 p50 / p90",
    "handling_time": "人工处理时间 p50 / p90",
    "csat": "满意度平均分",
    "csat_response": "满意度调查回复率",
    "not_understood": "未理解的消息数",
    "llm_calls": "LLM 调用",
    "llm_failed": "失败",
    "llm_tokens": "LLM 令牌数（提示 + 生成）",
    "llm_per_period": "每期 LLM 调用",
    "pending": "仍在进行",
    "per_period": "每期会话数",
    "containment_per_period": "每期独立解决率",
    "handoff_reasons": "转人工原因",
    "csat_distribution": "满意度评分（分数：次数）",
    "top_intents": "主要意图",
    "flows": "流程：开始、完成、取消",
    "flow": "流程",
    "started": "开始",
    "completed": "完成",
    "cancelled": "取消",
    "by_channel": "按渠道",
    "by_language": "按语言",
    "definitions": "定义",
    "def_conversations": "会话数：第一个事件落在所选时间范围内的会话。",
    "def_containment": (
        "独立解决率：机器人独立解决的会话占已有结论会话的比例。独立解决 = 没有转人工，"
        "机器人回答并理解了客户的最后一条消息，且客户确认（是、谢谢、再见），或在 {window} "
        "内没有再发消息且没有未完成的流程。仍在该时间窗口内的会话计为“仍在进行”，不计入比例。"
    ),
    "def_handoff": "转人工率：有转人工请求的会话占全部会话的比例；原因按客服台记录。",
    "def_times": (
        "接入等待时间：从转人工请求到第一位客服接入。人工处理时间：从客服接入到转人工结束。"
        "p50 为中位数，p90 为九成转人工低于的时间。"
    ),
    "def_csat": "满意度：调查回答的分数；回复率 = 回答数 / 已结束的转人工数。",
    "def_unknown": (
        "未理解：进入 pattern_cannot_handle 或被识别为 out_of_scope / nlu_fallback 的客户消息。"
    ),
    "def_llm": (
        "LLM 调用：所选日期内对语言模型的调用（按渠道统计，不按语言筛选），包括失败的调用"
        "（超时、出错，或因近期连续失败而被立即拒绝）；令牌数为模型对成功调用报告的数量。"
    ),
    "search": "会话 ID 包含",
    "intent": "意图",
    "handoff": "转人工",
    "any": "不限",
    "yes": "是",
    "no": "否",
    "started_at": "开始时间",
    "messages": "消息数",
    "reason": "原因",
    "transcript": "会话记录",
    "masked": "邮箱、电话号码和银行卡号已隐藏。",
    "not_found": "没有这个会话。",
    "groups_help": (
        "相似的消息用 kefu 自带的句向量模型分组。填写意图名称，把一组导出为 Rasa NLU 训练样例。"
    ),
    "examples": "条",
    "export_nlu": "导出为 NLU 样例",
    "intent_name": "意图名称",
    "none": "这段时间没有数据。",
    "customer": "客户",
    "bot": "机器人",
    "agent": "客服",
}


def words(language: str) -> dict[str, str]:
    """The dashboard's words in ``language`` (``en`` or ``zh``)."""
    return {**_EN, **_ZH} if language == "zh" else _EN
