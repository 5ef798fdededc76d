"""hubtui: browse, download, quantise, size and chat with Llama and Mistral checkpoints."""

__version__ = "0.1.0"
