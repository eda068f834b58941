# syntax=docker/dockerfile:latest
# The frontend image floats too.
FROM debian:bookworm-slim
