"""The training engine: model loading, adapters, methods, callbacks, runner. Imports torch lazily."""
