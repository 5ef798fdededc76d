"""Sizing: which GGUF of a model fits a machine or a target, and how to load it.

The data flows through four modules, each using only the ones before it:

- `hardware`: what this machine has (RAM with container limits, GPUs and their free VRAM, offload support),
  read through injectable probes;
- `profiles`: the memory budgets to size for (built-in target profiles, custom RAM/VRAM, this machine), with
  `repack` saying which weights llama.cpp's CPU backend copies for a given CPU;
- `memory`: llama.cpp's memory model, what loading a GGUF allocates per device and what must stay resident;
- `plan`: the sizing plan, every file type's exact size, the GPU layers and context that fit, the pick.

docs/sizing.md describes the model. Import the modules themselves (`from quant.sizing.plan import plan`);
this package re-exports nothing.
"""
