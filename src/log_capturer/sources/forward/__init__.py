"""The Fluent forward source: what Fluent Bit's and Fluentd's ``forward`` outputs send, over TCP."""
