"""Cross-lingual analysis: retrieval, dual multilinguality, statistics, token languages."""
