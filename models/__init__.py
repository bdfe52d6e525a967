"""Shipped int8 TFLite models and their manifest (installed as agent.models)."""
