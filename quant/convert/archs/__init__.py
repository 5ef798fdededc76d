"""The architecture families the converter knows, one module each (see `base.Architecture`).

Importing this package registers every family; add a module and import it here to add one.
"""

from quant.convert.archs import (
    llama,  # noqa: F401  (registers Llama, Mistral, Mixtral)
    llama4,  # noqa: F401  (registers Llama 4)
    mistral,  # noqa: F401  (registers Mistral's own layout)
    mistral3,  # noqa: F401  (registers Ministral 3, Mistral 3)
)
from quant.convert.archs.base import (
    Architecture,
    ExpertStack,
    active_params,
    family,
    for_gguf_architecture,
    for_hf_architecture,
    gguf_architectures,
    is_multimodal_tensor,
    param_counts,
    register,
    supported_architectures,
)

__all__ = [
    "Architecture",
    "ExpertStack",
    "active_params",
    "family",
    "for_gguf_architecture",
    "for_hf_architecture",
    "gguf_architectures",
    "is_multimodal_tensor",
    "param_counts",
    "register",
    "supported_architectures",
]
