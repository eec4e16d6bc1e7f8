// Replays, through the public API only (the SDK's time-travel recipe):
// * with recorded outputs up to step N, then live: a run from the original run's checkpoint of
//   step N (POST /threads/{id}/history filtered by the run's id and step, then POST …/runs with
//   that checkpoint_id and no input). Steps up to N are the checkpoint's recorded values: no node
//   runs again, no tokens are spent; the next step runs live.
// * with a modified input or config: a run from the checkpoint where the original run started
//   (the trace's base_checkpoint_id), which LangGraph records as a new branch; a thread's first
//   run has no such checkpoint, so its replay goes to a new thread.
import { api } from "./core.js";

export const isReplay = (run) => Boolean(run.metadata?.replay_of);

/** Replay `run` with its recorded outputs through `step`, live after. Returns {thread_id, run_id}. */
export async function replayRecorded(run, trace, step) {
  const [cp] = await api("POST", `/threads/${run.thread_id}/history`,
    { limit: 1, metadata: { run_id: run.run_id, step } });
  if (!cp) {
    // The step is before the run's first checkpoint: nothing recorded to reuse; start over.
    return replayModified(run, trace, { input: run.kwargs?.input ?? null,
      command: run.kwargs?.command, config: run.kwargs?.config, mode: "recorded", step });
  }
  const created = await api("POST", `/threads/${run.thread_id}/runs`, {
    assistant_id: run.assistant_id, input: null, checkpoint_id: cp.checkpoint_id,
    config: run.kwargs?.config || undefined,
    metadata: { replay_of: run.run_id, replay_of_thread: run.thread_id, replay_mode: "recorded",
      replay_up_to_step: step },
  });
  return { thread_id: run.thread_id, run_id: created.run_id };
}

/** Replay `run` from where it started, with `input` (or `command`) and `config` replaced. */
export async function replayModified(run, trace, { input, command, config, mode = "modified", step }) {
  const base = trace?.base_checkpoint_id;
  let threadId = run.thread_id;
  if (!base) {
    const thread = await api("GET", `/threads/${run.thread_id}`);
    const created = await api("POST", "/threads", {
      metadata: { ...(thread.metadata || {}), replay_of_thread: run.thread_id } });
    threadId = created.thread_id;
  }
  const body = {
    assistant_id: run.assistant_id, config: config || undefined,
    metadata: { replay_of: run.run_id, replay_of_thread: run.thread_id, replay_mode: mode,
      ...(step !== undefined ? { replay_up_to_step: step } : {}) },
  };
  if (command) body.command = command;
  else body.input = input ?? null;
  if (base) body.checkpoint_id = base;
  const created = await api("POST", `/threads/${threadId}/runs`, body);
  return { thread_id: threadId, run_id: created.run_id };
}

/** Follow a run's status until it is over (for buttons that wait for their replay). */
export async function runOver(threadId, runId, signal) {
  for (;;) {
    const run = await api("GET", `/threads/${threadId}/runs/${runId}`, undefined, { signal });
    if (run.status !== "pending" && run.status !== "running") return run;
    await new Promise((r) => setTimeout(r, 300));
  }
}
