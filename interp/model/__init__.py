"""Model: the architecture adapter, loading onto TransformerLens bridges, the tokenization rule, e5."""
