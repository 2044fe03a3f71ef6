"""The LLM backend: grounded answers and routing into flows, over any OpenAI-compatible server.

``bot.llm.backend.build_llm`` wires it from settings; with ``KEFU_LLM_MODEL`` unset there is no
LLM and the offline knowledge answerer serves alone.
"""
