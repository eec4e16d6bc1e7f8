"""Drive the support_triage agent on a running server: stream, review the draft, approve."""

from __future__ import annotations

import asyncio
import os
import sys

from langgraph_sdk import get_client

TICKET = "Hi, I was charged twice for my invoice this month! My email is alice@example.com."


async def main(ticket: str) -> None:
    client = get_client(url=os.environ.get("DOCKYARD_URL", "http://127.0.0.1:2024"))
    thread = await client.threads.create()
    print(f"thread {thread['thread_id']}\n> {ticket}")

    node = None
    async for part in client.runs.stream(
        thread["thread_id"],
        "support_triage",
        input={"messages": [{"role": "user", "content": ticket}]},
        stream_mode=["messages-tuple", "updates"],
    ):
        if part.event == "messages":
            chunk, meta = part.data
            if chunk.get("type") == "AIMessageChunk" and chunk.get("content"):
                if meta.get("langgraph_node") != node:
                    node = meta.get("langgraph_node")
                    print(f"\n[{node}] ", end="")
                print(chunk["content"], end="", flush=True)
        elif part.event == "updates":
            for step, update in part.data.items():
                if step == "__interrupt__":
                    print(f"\n\n[interrupt] {update[0]['value']['question']}")
                elif step == "tools":
                    print(f"\n[tools] {update['messages'][-1]['content']}")

    # A real UI would ask a human here; pass {"approved": False, "edited_reply": "..."} to edit.
    print("[client] resuming with approved=True")
    final = await client.runs.wait(
        thread["thread_id"], "support_triage", command={"resume": {"approved": True}}
    )
    print(f"\n[{final['category']}/{final['priority']}] sent reply:\n{final['final_reply']}")


if __name__ == "__main__":
    asyncio.run(main(" ".join(sys.argv[1:]) or TICKET))
