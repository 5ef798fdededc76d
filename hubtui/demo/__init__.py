"""Offline demo assets: a real Hugging Face checkpoint rebuilt from what installed packages ship."""
