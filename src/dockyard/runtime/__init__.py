"""Executing an agent: loading graphs, the worker loop, streaming events, checkpoint/resume."""
