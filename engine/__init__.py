"""Anomascope engine: image I/O, preprocessing, methods, training, inference and metrics.

The engine takes arrays and returns results; it never imports the UI (app) or the database (storage).
"""
