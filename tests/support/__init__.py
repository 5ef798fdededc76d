"""Helpers the tests share, not tests themselves: CLI and TUI drivers, tiny checkpoints and GGUFs,
llama.cpp's own quantiser and tools as references, memory caps. Fixture builders stay in tests/fixtures."""
