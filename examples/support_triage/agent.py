"""Support-ticket triage: classify, look things up with a tool, draft, ask a human, send.

The graph is the first thing newcomers run against Dockyard, so it exercises the features a
client sees: token streaming (``stream_mode="messages"``), a tool call executed by ``ToolNode``,
and a human-in-the-loop ``interrupt()`` resumed with ``Command(resume=...)``.

It needs no API key: unless ``OPENAI_API_KEY`` or ``ANTHROPIC_API_KEY`` is set (and the matching
``langchain_openai`` / ``langchain_anthropic`` package is importable) it uses ``ScriptedChatModel``,
a deterministic fake that answers from keywords in the ticket and streams token by token.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt

Category = Literal["billing", "technical", "other"]
Priority = Literal["low", "normal", "high"]


class SupportState(MessagesState, total=False):
    """Conversation messages plus what triage decided about the ticket."""

    category: Category
    priority: Priority
    draft_reply: str
    approved: bool
    edited_reply: str | None
    final_reply: str | None


# --- tools -------------------------------------------------------------------------------------

_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice@example.com": {
        "name": "Alice",
        "plan": "Pro",
        "status": "active",
        "last_invoice": "$49.00 on 2024-05-01",
    },
    "bob@example.com": {
        "name": "Bob",
        "plan": "Free",
        "status": "active",
        "last_invoice": None,
    },
}

_KB: dict[str, str] = {
    "billing": "KB-101: Refunds for duplicate charges are issued within 5 business days.",
    "technical": "KB-202: Most login errors are fixed by resetting the password and clearing "
    "cookies.",
    "other": "KB-303: Our support team answers general questions within one business day.",
}


@tool
def lookup_account(email: str) -> dict[str, Any]:
    """Look up a customer's account (name, plan, status, last invoice) by email address."""
    account = _ACCOUNTS.get(email.lower())
    if account is None:
        local = email.split("@", 1)[0] or "customer"
        account = {
            "name": local.capitalize(),
            "plan": "Starter",
            "status": "active",
            "last_invoice": "$19.00 on 2024-05-01",
        }
    return {"email": email.lower(), **account}


@tool
def search_kb(query: str) -> str:
    """Search the support knowledge base and return the most relevant article."""
    return _KB[_classify_text(query)[0]]


TOOLS: list[BaseTool] = [lookup_account, search_kb]


# --- the scripted model -------------------------------------------------------------------------

CLASSIFY_PROMPT = (
    "You triage customer-support tickets. Answer with exactly one line in the form "
    "'category=<billing|technical|other> priority=<low|normal|high>' and nothing else."
)
DRAFT_PROMPT = (
    "You are a friendly support agent. The ticket was classified as {category} with "
    "{priority} priority. If the ticket contains an email address, call lookup_account first; "
    "otherwise you may call search_kb. Then write a short reply to the customer (3 sentences "
    "at most), without a subject line."
)

_BILLING_WORDS = (
    "invoice",
    "refund",
    "charge",
    "charged",
    "billing",
    "payment",
    "subscription",
    "price",
    "receipt",
)
_TECHNICAL_WORDS = (
    "error",
    "bug",
    "crash",
    "login",
    "log in",
    "password",
    "api",
    "down",
    "timeout",
    "broken",
    "500",
)
_HIGH_WORDS = ("urgent", "asap", "immediately", "outage", "down", "twice", "cannot", "can't")
_LOW_WORDS = ("question", "wondering", "curious", "whenever")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def _classify_text(text: str) -> tuple[Category, Priority]:
    lowered = text.lower()
    category: Category = "other"
    if any(word in lowered for word in _BILLING_WORDS):
        category = "billing"
    elif any(word in lowered for word in _TECHNICAL_WORDS):
        category = "technical"
    priority: Priority = "normal"
    if any(word in lowered for word in _HIGH_WORDS):
        priority = "high"
    elif any(word in lowered for word in _LOW_WORDS):
        priority = "low"
    return category, priority


def _text(message: BaseMessage) -> str:
    return message.content if isinstance(message.content, str) else message.text


def _last_human(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return _text(message)
    return ""


class ScriptedChatModel(BaseChatModel):
    """A deterministic stand-in for a chat model, so the example runs without an API key.

    It picks its answer from keywords in the last user message and from the conversation so far
    (classify prompt → label; no tool result yet → a tool call; tool result → a drafted reply),
    which keeps it stateless and safe to share between concurrent runs. Replies are streamed one
    word at a time, like ``GenericFakeChatModel``, but tool calls survive streaming too (sent
    as ``tool_call_chunks`` on the last chunk).
    """

    token_delay: float = 0.0
    """Seconds to wait between streamed tokens, so that streaming is visible in a terminal."""

    @property
    def _llm_type(self) -> str:
        return "dockyard-scripted"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        # The script already knows which tools exist; binding changes nothing.
        return self

    def reply_to(self, messages: Sequence[BaseMessage]) -> AIMessage:
        """The scripted answer for a conversation."""
        system = _text(messages[0]) if messages and isinstance(messages[0], SystemMessage) else ""
        ticket = _last_human(messages)
        category, priority = _classify_text(ticket)
        if system.startswith(CLASSIFY_PROMPT[:30]):
            return AIMessage(content=f"category={category} priority={priority}")

        tool_results = _tool_results_after_last_human(messages)
        if not tool_results:
            email = _EMAIL.search(ticket)
            if email:
                call = {"name": "lookup_account", "args": {"email": email.group(0)}}
            else:
                call = {"name": "search_kb", "args": {"query": ticket[:200]}}
            return AIMessage(content="", tool_calls=[{**call, "id": "call_scripted_1"}])
        return AIMessage(content=_draft(category, tool_results))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.reply_to(messages))])

    def _chunks(self, messages: list[BaseMessage]) -> Iterator[ChatGenerationChunk]:
        message = self.reply_to(messages)
        # One chunk per word with its trailing whitespace, roughly how real models stream.
        tokens = re.findall(r"\s*\S+\s*", _text(message))
        for index, token in enumerate(tokens):
            last = index == len(tokens) - 1 and not message.tool_calls
            yield ChatGenerationChunk(
                message=AIMessageChunk(content=token, chunk_position="last" if last else None)
            )
        if message.tool_calls:
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {
                            "name": c["name"],
                            "args": json.dumps(c["args"]),
                            "id": c["id"],
                            "index": i,
                        }
                        for i, c in enumerate(message.tool_calls)
                    ],
                    chunk_position="last",
                )
            )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            if self.token_delay:
                time.sleep(self.token_delay)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
            if self.token_delay:
                await asyncio.sleep(self.token_delay)


def _tool_results_after_last_human(messages: Sequence[BaseMessage]) -> list[str]:
    results: list[str] = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            break
        if isinstance(message, ToolMessage):
            results.append(_text(message))
    return results


def _draft(category: Category, tool_results: list[str]) -> str:
    account: dict[str, Any] = {}
    article = ""
    for result in tool_results:
        try:
            parsed = json.loads(result)
        except ValueError:
            parsed = result
        if isinstance(parsed, dict):
            account = parsed
        else:
            article = str(parsed)
    greeting = f"Hi {account['name']}," if account.get("name") else "Hi there,"
    if category == "billing":
        invoice = account.get("last_invoice") or "not on file"
        body = (
            f"I checked your {account.get('plan', 'current')} plan: your last invoice was "
            f"{invoice}. I have asked our billing team to refund any duplicate charge, which "
            "takes up to 5 business days."
        )
    elif category == "technical":
        body = (
            "sorry about the trouble. Please reset your password and clear your browser "
            "cookies; if the error persists, reply with a screenshot and we will dig in."
        )
    else:
        body = "thanks for your message. A member of our team will follow up within one day."
    if article:
        body += f" ({article.split(':', 1)[0]})"
    return f"{greeting} {body} Best, the Support Team"


def make_model() -> BaseChatModel:
    """A real chat model when an API key and its package are available, else the scripted one."""
    if os.environ.get("OPENAI_API_KEY"):
        try:
            from langchain_openai import ChatOpenAI
        except ImportError:
            pass
        else:
            return ChatOpenAI(model=os.environ.get("DOCKYARD_EXAMPLE_MODEL", "gpt-4o-mini"))
    if os.environ.get("ANTHROPIC_API_KEY"):
        try:
            from langchain_anthropic import ChatAnthropic
        except ImportError:
            pass
        else:
            return ChatAnthropic(
                model=os.environ.get("DOCKYARD_EXAMPLE_MODEL", "claude-3-5-haiku-latest")
            )
    delay = float(os.environ.get("DOCKYARD_EXAMPLE_TOKEN_DELAY", "0.01"))
    return ScriptedChatModel(token_delay=delay)


# --- the graph ----------------------------------------------------------------------------------

_LABEL = re.compile(r"category\s*=\s*(\w+).*?priority\s*=\s*(\w+)", re.IGNORECASE | re.DOTALL)


def make_builder(model: BaseChatModel | None = None) -> StateGraph:
    """The uncompiled graph; tests compile it with their own checkpointer and model."""
    chat = model or make_model()
    chat_with_tools = chat.bind_tools(TOOLS)

    async def classify(state: SupportState) -> dict[str, Any]:
        ticket = _last_human(state["messages"])
        answer = await chat.ainvoke([SystemMessage(CLASSIFY_PROMPT), HumanMessage(ticket)])
        match = _LABEL.search(_text(answer))
        category, priority = _classify_text(ticket)  # fallback if the model goes off script
        if match and match.group(1).lower() in ("billing", "technical", "other"):
            category = match.group(1).lower()  # type: ignore[assignment]
        if match and match.group(2).lower() in ("low", "normal", "high"):
            priority = match.group(2).lower()  # type: ignore[assignment]
        return {"category": category, "priority": priority}

    async def draft(state: SupportState) -> dict[str, Any]:
        prompt = DRAFT_PROMPT.format(category=state["category"], priority=state["priority"])
        response = await chat_with_tools.ainvoke([SystemMessage(prompt), *state["messages"]])
        if isinstance(response, AIMessage) and response.tool_calls:
            return {"messages": [response]}
        # The draft stays out of the conversation until a human approves it.
        return {"draft_reply": _text(response)}

    def route_after_draft(state: SupportState) -> Literal["tools", "human_review"]:
        last = state["messages"][-1]
        if isinstance(last, AIMessage) and last.tool_calls:
            return "tools"
        return "human_review"

    def human_review(state: SupportState) -> dict[str, Any]:
        # Runs again from the top on resume, so nothing before interrupt() has side effects.
        decision = interrupt(
            {
                "question": "Send this reply?",
                "draft": state["draft_reply"],
                "category": state["category"],
                "priority": state["priority"],
            }
        )
        if isinstance(decision, bool):
            decision = {"approved": decision}
        if not isinstance(decision, dict):
            raise ValueError(f"resume with {{'approved': bool}}, got {decision!r}")
        edited = decision.get("edited_reply")
        return {
            "approved": bool(decision.get("approved")),
            "edited_reply": str(edited) if edited else None,
        }

    def send_reply(state: SupportState) -> dict[str, Any]:
        # An edited reply is the reviewer's own answer: it is sent even when "approved" is false.
        reply = state.get("edited_reply") or (
            state["draft_reply"] if state.get("approved") else None
        )
        if reply is None:
            return {"final_reply": None}
        return {"final_reply": reply, "messages": [AIMessage(content=reply)]}

    builder = StateGraph(SupportState)
    builder.add_node("classify", classify)
    builder.add_node("draft", draft)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_node("human_review", human_review)
    builder.add_node("send_reply", send_reply)
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "draft")
    builder.add_conditional_edges("draft", route_after_draft)
    builder.add_edge("tools", "draft")
    builder.add_edge("human_review", "send_reply")
    builder.add_edge("send_reply", END)
    return builder


builder = make_builder()
graph = builder.compile()
