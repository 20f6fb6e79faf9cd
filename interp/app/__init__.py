"""The app layer: every CLI, the pipeline and its stages, run config and presets, the run report.

The only layer that ties interp, probes and detox_train together; nothing imports it."""
