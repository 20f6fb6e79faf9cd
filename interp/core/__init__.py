"""Core: atomic artifact I/O with manifests, the data root, config files, quiet logging."""
