"""The HTTP layer: routes, dependencies, middleware, the problem+json renderer and the assets.

The only package (with main.py and lifespan.py, which compose the app) that imports FastAPI or
Starlette; the contract in pyproject.toml keeps the domain rooms free of it.
"""
