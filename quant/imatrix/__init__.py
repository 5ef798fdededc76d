"""Importance matrices (llama.cpp's imatrix): the file formats, and turning one into per-column weights.

`format` reads llama.cpp's GGUF imatrix files and its legacy `.dat` files and writes the GGUF format, the
one `llama-imatrix` writes by default and `llama-quantize --imatrix` reads (docs/imatrix.md).
"""
