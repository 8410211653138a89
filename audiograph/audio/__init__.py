"""Audio in, encoder inputs out: AudioConfig, decoding, the log-mel front-end, the encoder and descriptors."""
