"""The pure core's models: no I/O, every invalid input raises ValidationError."""
