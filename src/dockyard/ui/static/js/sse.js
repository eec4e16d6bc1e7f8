// The thread streaming protocol over SSE (POST /threads/{id}/stream/events), read with fetch
// and a ReadableStream (EventSource cannot POST). Reconnects with `since` = the last seq seen,
// so no event is lost or repeated.
import { BASE, authHeaders } from "./core.js";

export async function followThread(threadId, channels, onEvent, { signal, onStatus } = {}) {
  let since = null;
  let attempt = 0;
  while (!signal?.aborted) {
    try {
      onStatus?.("connecting");
      const body = { channels };
      if (since !== null) body.since = since;
      const res = await fetch(`${BASE}/threads/${threadId}/stream/events`, {
        method: "POST", headers: { "content-type": "application/json", ...authHeaders() },
        body: JSON.stringify(body), signal,
      });
      if (!res.ok) {
        let detail = `HTTP ${res.status}`;
        try { detail = (await res.json()).detail || detail; } catch { /* not JSON */ }
        throw new Error(detail);
      }
      onStatus?.("open");
      attempt = 0;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
          const data = block.split(/\r?\n/).filter((l) => l.startsWith("data:"))
            .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
          if (!data) continue; // heartbeat or comment
          let msg;
          try { msg = JSON.parse(data); } catch { continue; }
          if (typeof msg.seq === "number") since = msg.seq;
          onEvent(msg);
        }
      }
    } catch (err) {
      if (signal?.aborted || err.name === "AbortError") return;
      onStatus?.("error", err);
    }
    attempt += 1;
    await new Promise((r) => setTimeout(r, Math.min(5000, 300 * 2 ** attempt)));
  }
}
