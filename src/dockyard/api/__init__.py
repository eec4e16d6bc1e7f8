"""HTTP + SSE API (FastAPI). Routes call services; they never touch SQL."""
