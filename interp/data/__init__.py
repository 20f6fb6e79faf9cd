"""Data: records, the RTP-LX loaders and the hold-out split, other sources, languages, the lexicon."""
