"""Anomascope application layer: the command line and the Gradio review app (joins engine and storage)."""
