"""Data: media decoding, layout A and its preparation, preprocessing, the synthetic dataset, TFDS builders,
and the grain input pipeline. `avjax.data.sources.build(config.data)` is the entry point."""
