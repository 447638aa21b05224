"""Integrations with engines that run onnxfast sessions for you (``onnxfast.integrations.ray``).

Each integration is its own module with its own optional extra (``pip install onnxfast[ray]``); nothing
here is imported by ``import onnxfast``.
"""
