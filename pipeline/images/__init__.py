"""Photos in: safe archive reading, image decoding and sniffing, upload ingest, preprocessing to 28x28."""
