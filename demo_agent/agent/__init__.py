"""The demo's CLI agent: a planner (deterministic, or an LLM when configured), tools
built on the SDK, and a chat loop. Run it with `python -m demo_agent`."""
