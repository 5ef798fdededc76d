"""Everything that runs a GGUF through llama-cpp-python: smoke test, chat engine, field bundle.

Nothing here writes to the terminal on its own: progress goes through callbacks and results come
back as values, so the CLI and the TUI share the same code. Heavy imports (llama_cpp, numpy,
gguf) happen inside the modules that need them, never at package import.
"""
