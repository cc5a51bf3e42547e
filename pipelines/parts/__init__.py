"""Steps of one pipeline too big for its own module: the encode ModelHandler, the dedup stages."""
