"""Run llama.cpp's own `convert_hf_to_gguf.py --vocab-only` as the reference for tokenizer and general KVs.

Usage (with a Python that has transformers==4.57.6, sentencepiece, protobuf, numpy, pyyaml and safetensors;
torch is NOT needed): python llama_cpp_vocab_only.py LLAMA_CPP_SRC CHECKPOINT_DIR OUT.gguf

The converter imports torch at module level but a vocab-only export never touches a tensor, so a stub
stands in for it. transformers is imported first so that it sees no torch and stays tokenizer-only.
"""

import runpy
import sys
from unittest import mock


def main() -> None:
    src, checkpoint, out = sys.argv[1:4]
    import transformers  # noqa: F401  (decides "no torch" before the stub exists)
    from transformers import AutoTokenizer  # noqa: F401

    stub = mock.MagicMock(name="torch")
    for name in ("torch", "torch.nn", "torch.nn.functional", "torch.utils", "torch.utils._pytree"):
        sys.modules[name] = stub
    sys.path[:0] = [src, f"{src}/gguf-py"]
    sys.argv = ["convert_hf_to_gguf.py", checkpoint, "--vocab-only", "--outtype", "f32", "--outfile", out]
    runpy.run_path(f"{src}/convert_hf_to_gguf.py", run_name="__main__")


if __name__ == "__main__":
    main()
