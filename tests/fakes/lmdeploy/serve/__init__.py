"""Fake `lmdeploy.serve` package (LMDeploy 0.18.0): only `lmdeploy.serve.core.AsyncEngine` is modelled."""
