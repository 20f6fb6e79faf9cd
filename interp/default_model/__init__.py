"""The embedded default model: recipe, corpus, training loop, cached build."""
