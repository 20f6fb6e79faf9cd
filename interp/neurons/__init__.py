"""Toxic neurons: ranking, activations, vocabulary projection, key activations, interventions."""
