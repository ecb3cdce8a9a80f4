"""Media in and out: video and frame-folder decoding, first-frame masks and their providers,
the output writers, and the bounded decode/encode threads between them and the engine."""
